"""The device seam: what a run needs of a device (Target) and of whatever finds devices
(Provider), whoever reaches them and however.

A run prepares a target's files, runs the benchmark command on it with a deadline, reads its
telemetry between launches, and waits for it to come back when its link drops; it never needs to
know that an adb server, a lab host or a Ray actor stands behind it. The adb provider
(harness.targets.adb.provider) is today's implementation; every implementation passes the template tests
of tests/test_target_contract.py.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from harness.errors import BenchError, DeviceError

# States a target can be in (adb's names, which other providers map onto).
ONLINE = "device"
NOT_FOUND = "not found"
# A shell's exit statuses for a command it could not run (POSIX sh; Android's mksh and toybox).
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127


@dataclass
class ShellResult:
    status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class DeviceInfo:
    serial: str
    server: str
    state: str
    model: str | None = None
    abi: str | None = None
    sdk: int | None = None
    battery_pct: int | None = None
    temperature_c: float | None = None  # skin and battery (Telemetry.gate_temp_c)
    props: dict = field(default_factory=dict)
    telemetry: object = None  # the Telemetry snapshot the figures above come from

    def to_dict(self) -> dict:
        snap = self.telemetry
        return {
            "serial": self.serial, "server": self.server, "state": self.state,
            "model": self.model, "abi": self.abi, "sdk": self.sdk,
            "release": self.props.get("ro.build.version.release"),
            "battery_pct": self.battery_pct, "temperature_c": self.temperature_c,
            "battery_temp_c": getattr(snap, "battery_temp_c", None),
            "skin_temp_c": getattr(snap, "skin_temp_c", None),
            "cpu_temp_c": getattr(snap, "cpu_temp_c", None),
            "thermal_status": getattr(snap, "thermal_status", None),
            "charging": getattr(snap, "charging", None),
        }


class CommandTimeout(DeviceError):
    """A device command ran past its deadline (a hung benchmark, a stalled link)."""


class Cancelled(BenchError):
    """A command or a wait given up because the caller is stopping (Ctrl-C). Not a
    DeviceError: the device did nothing wrong, so nothing retries it or records a failure."""


@dataclass(frozen=True)
class TargetFile:
    """A file the run needs on the device: pushed unless the device already has this content."""

    local: Path
    remote: str
    sha256: str
    mode: int = 0o644


class RemoteFileError(BenchError):
    """A device file that is there but cannot be read (the device refused: permissions, a
    folder, gone between looking and reading): the file's problem, not the link's."""


class HostLost(DeviceError):
    """The host that reaches the device left (a lab host's node died, its agent is gone): the
    device's jobs are lost, not failed, and `--resume` measures them once the host is back."""


class Shell(Protocol):
    """What the shared device code (telemetry, hygiene gates, the on-device lock) needs of a
    device: a Target, or an adb DeviceSession beneath one."""

    serial: str
    timeout_s: float

    def shell(self, command: str, timeout_s: float | None = None,
              cancel: threading.Event | None = None) -> ShellResult: ...


class Target(ABC):
    """One device. `serial` is how its provider addresses it; `identity()` is the device's own
    stable id (ro.serialno on Android), which keys its results across hosts and restarts."""

    serial: str
    provider_name: str  # which provider instance reaches it (an adb server's name), as stored
    key: tuple[str, str]  # unique among every provider's devices: (provider address, serial)
    listed_state: str  # its state when it was discovered (NOT_FOUND: named, but nobody lists it)
    timeout_s: float  # the default deadline of a command
    host: str | None = None  # the lab host it is on, when another host reaches it (a cluster's)

    @abstractmethod
    def state(self) -> str:
        """ONLINE, NOT_FOUND, or the provider's word for why not (offline, unauthorized...)."""

    @abstractmethod
    def identity(self) -> str | None:
        """The device's stable id (its serial when it has none of its own); None when it does
        not answer now."""

    @abstractmethod
    def info(self):
        """Model, ABI, SDK, battery %, temperature °C and the properties (DeviceInfo)."""

    @abstractmethod
    def files_to_send(self, files: list[TargetFile]) -> list[TargetFile]:
        """Those of `files` the device lacks (no file there, or another sha256)."""

    @abstractmethod
    def send_files(self, files: list[TargetFile],
                   progress: Callable[[int], None] | None = None) -> int:
        """Put `files` on the device (folders made, modes set); returns the bytes sent.
        `progress` hears the bytes sent so far, over all the files."""

    def prepare_files(self, files: list[TargetFile],
                      progress: Callable[[int], None] | None = None) -> int:
        """Send what the device lacks of `files`; the bytes sent (0 when it has them all)."""
        return self.send_files(self.files_to_send(files), progress)

    @abstractmethod
    def shell(self, command: str, timeout_s: float | None = None,
              cancel: threading.Event | None = None):
        """Run a shell command (default deadline: `timeout_s`); a ShellResult (stdout, stderr,
        status). DeviceError when the link fails or the deadline passes (CommandTimeout),
        Cancelled soon after `cancel` is set."""

    @abstractmethod
    def read_file(self, remote: str, max_bytes: int) -> bytes | None:
        """A file's content from the device (`adb pull`); None when there is no such file; at
        most `max_bytes + 1` bytes (a longer file is cut there, so the caller sees it is too
        long). RemoteFileError when the device refuses to send it, DeviceError when the link
        fails."""

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
        """The devices `selector` means (harness.targets.selectors); a serial nobody lists
        comes back NOT_FOUND, so the run records it instead of skipping it."""
