"""Targets behind adb servers: USB phones, `adb connect` devices and bench's virtual devices.

The adapter over today's adb code (harness.devices.session, .discovery, .telemetry); the device
runner moves onto it next (issue 11), after which those modules move under this package.
"""
from __future__ import annotations

import threading
from typing import Callable

from harness.devices.discovery import DeviceTarget, known_servers, list_targets, select_devices
from harness.devices.session import AdbServer, DeviceSession
from harness.targets.base import Provider, Target, TargetFile


class AdbTarget(Target):
    def __init__(self, target: DeviceTarget, timeout_s: float = 20.0):
        self.device = target
        self.serial, self.provider_name = target.serial, target.server.name
        self._session = DeviceSession(target.serial, target.server, timeout_s=timeout_s)

    def state(self) -> str:
        return self._session.state()

    def identity(self) -> str:
        from harness.lab.jobs import device_identity

        return device_identity(self._session.getprops(), self.serial)

    def info(self):
        return self._session.info()

    def prepare_files(self, files: list[TargetFile],
                      progress: Callable[[int], None] | None = None) -> int:
        return self._session.push_cached([(f.local, f.remote, f.sha256, f.mode) for f in files],
                                         progress=progress)

    def run(self, command: str, timeout_s: float, cancel: threading.Event | None = None):
        return self._session.shell(command, timeout_s=timeout_s, cancel=cancel)

    def telemetry(self):
        from harness.devices.telemetry import read_telemetry

        return read_telemetry(self._session)

    def recover(self, deadline_s: float, stop: threading.Event | None = None) -> None:
        from harness.lab.device_runner import wait_for_device

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
