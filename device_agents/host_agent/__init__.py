"""The host agent of a lab of many hosts: started on each lab host by `bench lab join`, it keeps
one Ray actor per phone of the host's own adb server (harness.targets.cluster drives them)."""
