"""The device seam: what a run needs of a device (Target) and of whatever finds devices
(Provider), whoever reaches them and however.

A run prepares a target's files, runs the benchmark command on it with a deadline, reads its
telemetry between launches, and waits for it to come back when its link drops; it never needs to
know that an adb server, a lab host or a Ray actor stands behind it. The adb provider
(harness.targets.adb) is today's implementation; every implementation passes the template tests
of tests/test_target_contract.py.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# States a target can be in (adb's names, which other providers map onto).
ONLINE = "device"
NOT_FOUND = "not found"


@dataclass(frozen=True)
class TargetFile:
    """A file the run needs on the device: pushed unless the device already has this content."""

    local: Path
    remote: str
    sha256: str
    mode: int = 0o644


class Target(ABC):
    """One device. `serial` is how its provider addresses it; `identity()` is the device's own
    stable id (ro.serialno on Android), which keys its results across hosts and restarts."""

    serial: str
    provider_name: str

    @abstractmethod
    def state(self) -> str:
        """ONLINE, NOT_FOUND, or the provider's word for why not (offline, unauthorized...)."""

    @abstractmethod
    def identity(self) -> str:
        """The device's stable id; the serial when the device does not say."""

    @abstractmethod
    def info(self):
        """Model, ABI, SDK, battery %, temperature °C and the properties (DeviceInfo)."""

    @abstractmethod
    def prepare_files(self, files: list[TargetFile],
                      progress: Callable[[int], None] | None = None) -> int:
        """Put `files` on the device, skipping those whose sha256 already matches; returns the
        bytes sent. `progress` hears the bytes sent so far."""

    @abstractmethod
    def run(self, command: str, timeout_s: float, cancel: threading.Event | None = None):
        """Run a shell command; a ShellResult (stdout, stderr, status). DeviceError when the
        link fails or the deadline passes (CommandTimeout), Cancelled soon after `cancel`."""

    @abstractmethod
    def telemetry(self):
        """Battery, temperatures, thermal status and CPU frequencies now (Telemetry)."""

    @abstractmethod
    def recover(self, deadline_s: float, stop: threading.Event | None = None) -> None:
        """Wait until the device is ONLINE again (reconnecting what can be reconnected);
        DeviceError past the deadline, Cancelled once `stop` is set."""


class Provider(ABC):
    """Finds devices: every one it can reach, and those a selector names."""

    name: str

    @abstractmethod
    def discover(self) -> list[Target]:
        """Every device it reaches, in whatever state."""

    @abstractmethod
    def select(self, selector: str) -> list[Target]:
        """The devices `selector` means (harness.devices.selectors); a serial nobody lists
        comes back NOT_FOUND, so the run records it instead of skipping it."""
