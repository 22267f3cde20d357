"""Which adb servers bench talks to, and which of their devices a `--devices` selector means."""
from __future__ import annotations

from dataclasses import dataclass

from harness.devices.session import AdbServer, list_device_states
from harness.errors import DeviceError, UserError


@dataclass(frozen=True)
class DeviceTarget:
    serial: str
    server: AdbServer
    state: str  # as the adb server lists it: device, offline, unauthorized, ... or "not found"


def known_servers(configured: list[AdbServer] | None = None) -> list[AdbServer]:
    """Configured servers, plus the virtual lab's when one is up; else the local default."""
    from harness.lab.virtual_lab import LabState  # the lab module imports this one

    servers = list(configured or [])
    lab = LabState.load()
    if lab is not None:
        servers.append(lab.server)
    if not servers:
        servers.append(AdbServer())
    return servers


def list_targets(servers: list[AdbServer]) -> tuple[list[DeviceTarget], dict[str, str]]:
    """Every device of every server, and the servers that could not be reached (name -> why)."""
    targets, unreachable = [], {}
    for server in servers:
        try:
            for serial, state in list_device_states(server):
                targets.append(DeviceTarget(serial, server, state))
        except DeviceError as exc:
            unreachable[server.name] = str(exc)
    return targets, unreachable


def select_devices(selector: str, servers: list[AdbServer]) -> list[DeviceTarget]:
    """`all` or a comma list of serials. A serial that no server lists comes back as
    "not found" so the run records it as a failed device instead of silently skipping it."""
    selector = (selector or "").strip()
    if not selector:
        raise UserError("--devices is empty: use --devices all or --devices SERIAL[,SERIAL...]")
    targets, unreachable = list_targets(servers)
    if selector == "all":
        if not targets:
            where = ", ".join(f"{s.name} ({s.address})" for s in servers)
            extra = f"; unreachable: {'; '.join(unreachable.values())}" if unreachable else ""
            raise UserError(f"--devices all: no device on adb server(s) {where}{extra}; "
                            "start a virtual lab with `bench lab up --virtual 2` or plug in a phone")
        return targets
    chosen = []
    for serial in [s.strip() for s in selector.split(",") if s.strip()]:
        found = [t for t in targets if t.serial == serial]
        chosen.extend(found or [DeviceTarget(serial, servers[0], "not found")])
    return chosen
