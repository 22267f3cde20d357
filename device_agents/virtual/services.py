"""Which service an OPEN asks for, and what the device advertises that it can do.

``FEATURES`` lists exactly what is implemented: the host uses a feature only when both sides
list it, so advertising more (e.g. sendrecv_v2, delayed_ack) would make it send what we can't read.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Optional

from device_agents.virtual.faults import FaultWatcher
from device_agents.virtual.sandbox import Sandbox, VirtualDeviceConfig
from device_agents.virtual.shell_service import parse_shell_service, serve_shell
from device_agents.virtual.sync_service import serve_sync
from device_agents.virtual.transport import Stream

FEATURES = ["shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir"]


@dataclass
class DeviceServices:
    """Device-wide state the services share; ``open`` is the transport's ServiceOpener."""

    config: VirtualDeviceConfig
    sandbox: Sandbox
    faults: FaultWatcher

    def open(self, service: str, stream: Stream) -> Optional[Awaitable[None]]:
        if service == "sync:":
            return serve_sync(stream, self.sandbox, self.faults)
        shell = parse_shell_service(service)
        if shell is not None:
            link = stream.link
            return serve_shell(shell, stream, self.sandbox, self.config, self.faults,
                               drop_connection=lambda: link.drop("drop_during_benchmark_s"))
        return None  # unknown service: the transport answers CLSE(0, host_id)
