"""Which host cores a virtual device runs on, and how the device numbers them.

A phone owns its CPU: nothing else runs on it while it benchmarks. Virtual devices share one
host, so `bench lab up` gives each its own host cores when there are enough (and keeps the first
core for the host side: the adb server and bench itself), and the device shows only those cores:
device core i is host core `host_cpus[i]` in its sysfs, `nproc` and `taskset` masks. Without a
slice of its own a device shows and uses every host core.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


def all_host_cpus() -> tuple[int, ...]:
    return tuple(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class CpuSlice:
    host_cpus: tuple[int, ...]  # the host cores the device runs on
    # How many cores the device reports: len(host_cpus), or a replayed phone's count (profile.py),
    # whose core i then runs on host core host_cpus[i % len(host_cpus)].
    device_count: int | None = None

    @classmethod
    def of(cls, host_cpus: list[int] | tuple[int, ...] | None,
           device_count: int | None = None) -> "CpuSlice":
        return cls(tuple(host_cpus) if host_cpus else all_host_cpus(), device_count)

    @property
    def count(self) -> int:
        return self.device_count or len(self.host_cpus)

    def host_of(self, device_cpu: int) -> int:
        return self.host_cpus[device_cpu % len(self.host_cpus)]

    def host_set(self, device_mask: int) -> set[int]:
        """Host cores of the device cores whose bits are set in `device_mask`."""
        return {self.host_of(i) for i in range(self.count) if device_mask >> i & 1}

    def device_mask(self, host_cpus: set[int]) -> int:
        """The device's affinity mask for a set of host cores (cores outside the slice drop)."""
        return sum(1 << i for i in range(self.count) if self.host_of(i) in host_cpus)


def plan_cpu_slices(n_devices: int, host_cpus: list[int] | tuple[int, ...] | None = None
                    ) -> list[list[int]]:
    """Host cores for each of `n_devices` virtual devices.

    With more cores than devices, the first core is left to the host side and the rest split in
    equal slices (a remainder stays unused, so the devices stay alike). With as many devices as
    cores or more, each device gets one core, and devices beyond the core count share them
    round-robin (their concurrent timings then disturb each other; `bench lab status` says so).
    """
    cpus = sorted(host_cpus if host_cpus is not None else all_host_cpus())
    if n_devices < 1 or not cpus:
        return []
    pool = cpus[1:] if len(cpus) > n_devices else cpus
    per_device = len(pool) // n_devices
    if per_device >= 1:
        return [pool[i * per_device:(i + 1) * per_device] for i in range(n_devices)]
    return [[pool[i % len(pool)]] for i in range(n_devices)]


def shared_cores(slices: dict[str, list[int]]) -> dict[int, list[str]]:
    """Host core -> the devices (names) that run on it, for cores with more than one device."""
    users: dict[int, list[str]] = {}
    for name, cpus in slices.items():
        for cpu in cpus or all_host_cpus():
            users.setdefault(cpu, []).append(name)
    return {cpu: names for cpu, names in sorted(users.items()) if len(names) > 1}
