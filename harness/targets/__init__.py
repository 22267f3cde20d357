"""Devices as a run sees them: the Target and Provider interfaces (base) and their
implementations: adb/ (phones and virtual devices behind adb servers, and the virtual lab) and
cluster (phones on the lab hosts of a Ray cluster). Beside them what every target shares:
selectors, locks (this host's, device_lock on the device), hygiene gates and telemetry."""
