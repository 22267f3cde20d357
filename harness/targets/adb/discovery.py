"""Which adb servers bench talks to, and which of their devices a `--devices` selector means.

Every server is asked concurrently and with a timeout: a dead or unreachable lab host costs
one warning, never a hang, and never a server started on the default port (see
`ServerBoundClient` in session.py).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from harness.config import LabConfig
from harness.targets.selectors import (DeviceFacts, describe_devices, needs_device_properties,
                                       parse_selector, resolve_selector)
from harness.targets.adb.session import AdbServer, DeviceSession, list_device_states
from harness.errors import DeviceError, UserError

LIST_TIMEOUT_S = 5.0
PROPS_TIMEOUT_S = 10.0
MAX_PARALLEL_QUERIES = 16


@dataclass(frozen=True)
class DeviceTarget:
    serial: str
    server: AdbServer
    state: str  # as the adb server lists it: device, offline, unauthorized, ... or "not found"
    tags: tuple[str, ...] = ()  # from [lab.tags]


def default_lab_config() -> LabConfig:
    """The [lab] of ./bench.toml (an empty lab when there is none)."""
    from harness.config import load_config

    return load_config(None).lab


def known_servers(configured: list[AdbServer] | LabConfig | None = None) -> list[AdbServer]:
    """Configured servers, plus the virtual lab's when one is up; else the local default.

    `configured` None means the [lab.servers] of ./bench.toml. A server listed twice (the
    virtual lab's also configured by name) is kept once, under its configured name.
    """
    from harness.targets.adb.virtual_lab import LabState  # the lab module imports this one

    if configured is None:
        configured = default_lab_config()
    if isinstance(configured, LabConfig):
        configured = configured_servers(configured)
    servers = list(configured)
    lab = LabState.load()
    if lab is not None:
        servers.append(lab.server)
    if not servers:
        servers.append(AdbServer())
    unique: dict[tuple[str, int], AdbServer] = {}
    for server in servers:
        unique.setdefault((server.host, server.port), server)
    return list(unique.values())


def configured_servers(lab: LabConfig) -> list[AdbServer]:
    """The adb servers of [lab.servers], under their configured names."""
    return [AdbServer(s.host, s.port, name=s.name) for s in lab.servers]


def list_targets(servers: list[AdbServer], lab: LabConfig | None = None,
                 timeout_s: float = LIST_TIMEOUT_S
                 ) -> tuple[list[DeviceTarget], dict[str, str]]:
    """Every device of every server, and the servers that could not be reached (name -> why).

    Servers are asked at once, so one slow remote host delays the answer by its timeout only.
    """
    def ask(server: AdbServer):
        try:
            return list_device_states(server, timeout_s=timeout_s), None
        except DeviceError as exc:
            return [], str(exc)

    targets, unreachable = [], {}
    if not servers:
        return targets, unreachable
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_QUERIES, len(servers))) as pool:
        answers = list(pool.map(ask, servers))
    for server, (states, error) in zip(servers, answers):
        if error is not None:
            unreachable[server.name] = error
        for serial, state in states:
            tags = tuple(lab.tags_of(serial)) if lab else ()
            targets.append(DeviceTarget(serial, server, state, tags))
    return targets, unreachable


def device_facts(targets: list[DeviceTarget], with_properties: bool,
                 timeout_s: float = PROPS_TIMEOUT_S) -> list[DeviceFacts]:
    """What selectors match on, per target; model and ABI read (concurrently) from online
    devices when `with_properties`. A device that does not answer keeps them unknown."""
    def facts(target: DeviceTarget) -> DeviceFacts:
        model = abi = None
        if with_properties and target.state == "device":
            try:
                props = DeviceSession(target.serial, target.server, timeout_s=timeout_s).getprops()
                model, abi = props.get("ro.product.model"), props.get("ro.product.cpu.abi")
            except DeviceError:
                pass
        return DeviceFacts(target.serial, target.server.name, target.server.address,
                           target.state, model, abi, target.tags)

    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_QUERIES, len(targets))) as pool:
        return list(pool.map(facts, targets))


def select_devices(selector: str, servers: list[AdbServer], lab: LabConfig | None = None,
                   timeout_s: float = PROPS_TIMEOUT_S) -> list[DeviceTarget]:
    """The devices `selector` means (see harness.targets.selectors), from every server.

    A serial that no server lists comes back as "not found" so the run records it as a failed
    device instead of silently skipping it; a tag:/model:/abi:/server: term that matches
    nothing is a UserError listing what exists. `lab` None means the [lab] of ./bench.toml.
    """
    terms = parse_selector(selector)
    if lab is None:
        lab = default_lab_config()
    targets, unreachable = list_targets(servers, lab)
    if not targets and any(t.kind == "all" for t in terms):
        where = ", ".join(f"{s.name} ({s.address})" for s in servers)
        extra = f"; unreachable: {'; '.join(unreachable.values())}" if unreachable else ""
        raise UserError(f"--devices all: no device on adb server(s) {where}{extra}; "
                        "start a virtual lab with `bench lab up --virtual 2` or plug in a phone")
    facts = device_facts(targets, needs_device_properties(terms), timeout_s)
    try:
        chosen, missing = resolve_selector(terms, facts)
    except UserError as exc:
        if unreachable:  # what exists may be on the server that did not answer
            raise UserError(f"{exc}; unreachable: {'; '.join(unreachable.values())}") from None
        raise
    by_key = {(t.server.address, t.serial): t for t in targets}
    result = [by_key[f.server_address, f.serial] for f in chosen]
    home = servers[0] if servers else AdbServer()  # where a missing device would have been
    result += [DeviceTarget(serial, home, "not found", tuple(lab.tags_of(serial)))
               for serial in missing]
    return result


__all__ = ["DeviceTarget", "known_servers", "list_targets", "device_facts", "select_devices",
           "default_lab_config", "describe_devices"]
