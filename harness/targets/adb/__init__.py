"""Devices behind adb servers: the adb protocol session (session), which servers and devices
exist (discovery), the AdbTarget/AdbProvider over them (provider), the adb binary bench runs
(adb_binary) and the virtual lab's control (virtual_lab)."""
