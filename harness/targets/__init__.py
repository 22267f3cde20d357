"""Devices as a run sees them: the Target and Provider interfaces (base) and their
implementations (adb: phones and virtual devices behind adb servers)."""
