"""Targets behind adb servers: USB phones, `adb connect` devices and bench's virtual devices.

The adapter over the adb session and discovery beside it (and the shared telemetry); the device
runner sees only the Target interface, so another provider (a lab host's agent) slots in
beside this one.
"""
from __future__ import annotations

import shlex
import threading
import time
from typing import Callable

from harness.targets.adb.discovery import DeviceTarget, known_servers, list_targets, select_devices
from harness.targets.adb.session import AdbServer, DeviceSession, list_device_states
from harness.errors import DeviceError
from harness.targets.base import ONLINE, Cancelled, Provider, Target, TargetFile

IDENTITY_TIMEOUT_S = 10.0


class AdbTarget(Target):
    def __init__(self, target: DeviceTarget, timeout_s: float = 20.0):
        self.device = target
        self.serial, self.provider_name = target.serial, target.server.name
        self.key = (target.server.address, target.serial)
        self.listed_state = target.state
        self.timeout_s = timeout_s
        self.tags = target.tags
        self._session = DeviceSession(target.serial, target.server, timeout_s=timeout_s)

    def __repr__(self) -> str:
        return f"AdbTarget({self.serial!r} on {self.provider_name})"

    def state(self) -> str:
        return self._session.state()

    def identity(self) -> str | None:
        from harness.benchmark.jobs import device_identity

        if self.listed_state != ONLINE:
            return None
        try:
            props = DeviceSession(self.serial, self.device.server,
                                  timeout_s=IDENTITY_TIMEOUT_S).getprops()
        except DeviceError:
            return None
        return device_identity(props, self.serial)

    def info(self):
        return self._session.info()

    def files_to_send(self, files: list[TargetFile]) -> list[TargetFile]:
        on_device = self._session.remote_sha256([f.remote for f in files])
        return [f for f in files if on_device.get(f.remote) != f.sha256]

    def send_files(self, files: list[TargetFile],
                   progress: Callable[[int], None] | None = None) -> int:
        sent = 0
        folders = sorted({file.remote.rsplit('/', 1)[0] for file in files})
        if folders:  # one shell for all of them: a run's many sample files share a few folders
            self._session.shell("mkdir -p " + " ".join(shlex.quote(f) for f in folders))
        for file in files:
            file_progress = None if progress is None else (
                lambda sent_bytes, before_bytes=sent: progress(before_bytes + sent_bytes))
            sent += self._session.push(file.local, file.remote, mode=file.mode,
                                       progress=file_progress)
            if file.mode & 0o111:
                self._session.shell(f"chmod {file.mode:o} {shlex.quote(file.remote)}")
        return sent

    def shell(self, command: str, timeout_s: float | None = None,
              cancel: threading.Event | None = None):
        return self._session.shell(command, timeout_s=timeout_s, cancel=cancel)

    def read_file(self, remote: str, max_bytes: int) -> bytes | None:
        return self._session.pull_bytes(remote, max_bytes)

    def telemetry(self):
        from harness.targets.telemetry import read_telemetry

        return read_telemetry(self._session)

    def recover(self, deadline_s: float, stop: threading.Event | None = None) -> None:
        wait_for_device(self.device, deadline_s, stop)


class AdbProvider(Provider):
    """The devices of the configured adb servers (and of the virtual lab when one is up)."""

    name = "adb"

    def __init__(self, servers: list[AdbServer] | None = None, lab=None):
        from harness.config import LabConfig

        self.lab = lab if lab is not None else LabConfig()
        self.servers = servers if servers is not None else known_servers(self.lab)

    def discover(self) -> list[Target]:
        targets, _unreachable = list_targets(self.servers, self.lab)
        return [AdbTarget(t) for t in targets]

    def select(self, selector: str) -> list[Target]:
        return [AdbTarget(t) for t in select_devices(selector, self.servers, self.lab)]


def wait_for_device(target: DeviceTarget, deadline_s: float,
                    stop: threading.Event | None = None) -> None:
    """Wait until the device is listed as `device` again; re-`adb connect` network devices and
    restart a virtual lab's adb server if it was killed. Cancelled once `stop` is set."""
    from harness.targets.adb.virtual_lab import recover_server

    deadline = time.monotonic() + deadline_s
    last = "unknown"
    while time.monotonic() < deadline:
        if stop is not None and stop.is_set():
            raise Cancelled(f"{target.serial}: stopped waiting for the device")
        try:
            states = dict(list_device_states(target.server))
        except DeviceError as exc:
            last = str(exc)
            recover_server(target.server)
            time.sleep(0.5)
            continue
        last = states.get(target.serial, "not listed")
        if last == "device":
            return
        if ":" in target.serial:  # a network device (`adb connect` host:port) may need a nudge
            try:
                target.server.client(5).connect(target.serial, timeout=5)
            except Exception:  # adbutils raises several kinds; the next poll tells
                pass
        time.sleep(0.5)
    raise DeviceError(f"device {target.serial} did not come back within {deadline_s:g} s "
                      f"(last state: {last})")
