"""Targets on the lab hosts of a Ray cluster (`bench run --cluster HEAD:PORT`).

Each lab host runs a host agent (device_agents.host_agent, started by `bench lab join`) that
keeps one Ray actor per phone, on that host. A `RayTarget` is the controller's handle on one of
those actors: every Target call is a call of the actor, which drives the phone through its own
host's adb server. So the device runner, its locks, gates, retries, quarantine and the store
are the same code on one host and on many; only the device's operations travel.

Artifacts travel once per host: the first device of a host that needs a file gets it shipped
through Ray's object store to the host's agent (put once in this process, fetched once by each
host), the device actors push it from the host's copy, and the device-side hash check still
skips what a device already has.

A host that leaves mid-run makes its devices' calls fail with `HostLost`: the runner records
their jobs as lost (not done, so `--resume` measures them once the host is back).
Ray is imported only here and in the agent: a run without `--cluster` never imports it.
"""
from __future__ import annotations

import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from device_agents.host_agent.agent import AGENT_PREFIX, NAMESPACE
from harness.targets.selectors import DeviceFacts, parse_selector, resolve_selector
from harness.targets.base import Cancelled
from harness.errors import BenchError, DeviceError, UserError
from harness.targets.base import NOT_FOUND, ONLINE, HostLost, Provider, Target, TargetFile

# Beyond a call's own deadline: how long the controller waits for a lab host to answer.
ANSWER_MARGIN_S = 30.0
CALL_TIMEOUT_S = 60.0
LIST_TIMEOUT_S = 10.0   # a host's agent listing its devices (one that left answers never)
PROBE_TIMEOUT_S = 5.0
POLL_S = 0.1
LOST_POLL_S = 1.0


def head_address(address: str, option: str) -> tuple[str, int]:
    """(host, port) of a Ray head given as HOST:PORT to `option`; a one-line UserError else."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"{option} {address}: give the head's HOST:PORT (as `ray start "
                        "--head --port PORT` printed), e.g. 10.0.0.5:6379")
    return host, int(port)


def connect(address: str, option: str = "--cluster") -> None:
    """Join the cluster at `address` as a driver (once per process); a one-line UserError when
    Ray is not installed or nobody answers there."""
    try:
        import ray
    except ImportError:
        raise UserError(f"{option} {address}: Ray is not installed; "
                        "pip install 'bench[ray]' on this host and every lab host") from None
    if ray.is_initialized():
        return
    host, port = head_address(address, option)
    try:  # Ray itself would keep trying for minutes
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise UserError(f"{option} {address}: nothing answers there ({exc.strerror or exc}); "
                        "start the head with `ray start --head --port PORT`") from None
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"{option} {address}: no Ray cluster answers there ({_first_line(exc)}); "
                        "start its head with `ray start --head --port PORT` and join the lab "
                        "hosts with `bench lab join --address HEAD:PORT`") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Host:
    """One lab host as the controller sees it: its agent and what has been shipped to it."""

    def __init__(self, name: str, agent):
        self.name, self.agent = name, agent
        self.copies: dict[str, str] = {}   # sha256 -> path of the host's copy
        self.lock = threading.Lock()       # its devices' threads ship a file once between them


class RayProvider(Provider):
    """The devices of every lab host whose agent runs in the cluster at `address`."""

    name = "ray"

    def __init__(self, address: str, timeout_s: float = 20.0):
        self.address, self.timeout_s = address, timeout_s
        self._hosts: dict[str, _Host] = {}
        self._shipped: dict[str, object] = {}  # sha256 -> ObjectRef (put once in this process)
        self._ship_lock = threading.Lock()

    def hosts(self) -> dict[str, _Host]:
        import ray

        connect(self.address)
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == NAMESPACE and a["name"].startswith(AGENT_PREFIX)]
        for name in names:
            host = name[len(AGENT_PREFIX):]
            if host not in self._hosts:
                self._hosts[host] = _Host(host, ray.get_actor(name, namespace=NAMESPACE))
        return self._hosts

    def _listing(self) -> tuple[list[dict], dict[str, str]]:
        """Every device of every host that answers, and the hosts that did not (name -> why)."""
        import ray

        hosts = self.hosts()
        refs = {name: host.agent.devices.remote() for name, host in hosts.items()}
        devices, unreachable = [], {}
        for name, ref in refs.items():
            try:
                devices += ray.get(ref, timeout=LIST_TIMEOUT_S)
            except Exception as exc:  # a host that left: the others still answer
                unreachable[name] = _first_line(exc)
        return devices, unreachable

    def discover(self) -> list[Target]:
        devices, _unreachable = self._listing()
        return [RayTarget(self, d, self.timeout_s) for d in devices]

    def select(self, selector: str) -> list[Target]:
        terms = parse_selector(selector)
        devices, unreachable = self._listing()
        if not devices and any(t.kind == "all" for t in terms):
            extra = f"; unreachable: {'; '.join(f'{h}: {w}' for h, w in unreachable.items())}" \
                if unreachable else ""
            raise UserError(f"--devices all: no device on the lab hosts of cluster {self.address} "
                            f"({', '.join(self._hosts) or 'no host joined'}){extra}; join a host "
                            "with `bench lab join --address HEAD:PORT`")
        facts = [DeviceFacts(d["serial"], d["host"], f"ray:{d['host']}", d["state"], d["model"],
                             d["abi"]) for d in devices]
        chosen, missing = resolve_selector(terms, facts)
        by_key = {(f"ray:{d['host']}", d["serial"]): d for d in devices}
        targets: list[Target] = [RayTarget(self, by_key[f.server_address, f.serial],
                                           self.timeout_s) for f in chosen]
        for serial in missing:
            targets.append(RayTarget(self, {"serial": serial, "host": "none", "state": NOT_FOUND,
                                            "actor_name": None, "identity": None},
                                     self.timeout_s))
        return targets

    # -- artifacts, once per host -----------------------------------------------------------
    def host_copy(self, host_name: str, file: TargetFile) -> str:
        """The path of `file` on the lab host, shipped there first if it has no copy."""
        import ray

        host = self._hosts[host_name]
        with host.lock:
            if file.sha256 in host.copies:
                return host.copies[file.sha256]
            name = file.local.name
            path = _get(host.agent.has.remote(file.sha256, name), host_name)
            if path is None:
                with self._ship_lock:
                    ref = self._shipped.get(file.sha256)
                    if ref is None:
                        ref = self._shipped[file.sha256] = ray.put(file.local.read_bytes())
                path = _get(host.agent.stage.remote(file.sha256, name, ref), host_name)
            host.copies[file.sha256] = path
            return path


class RayTarget(Target):
    """A phone on a lab host, driven through its device actor there."""

    def __init__(self, provider: RayProvider, device: dict, timeout_s: float):
        self.provider, self.device = provider, device
        self.serial = device["serial"]
        self.host = device["host"]
        self.provider_name = self.host
        self.key = (f"ray:{self.host}", self.serial)
        self.listed_state = device["state"]
        self.timeout_s = timeout_s
        self.actor_name = device.get("actor_name")
        self._actor = None

    def __repr__(self) -> str:
        return f"RayTarget({self.serial!r} on lab host {self.host})"

    # -- calls ------------------------------------------------------------------------------
    def _handle(self):
        import ray

        if self.actor_name is None:
            raise DeviceError(f"device {self.serial} is {self.listed_state} on lab host "
                              f"{self.host}")
        if self._actor is None:
            try:
                self._actor = ray.get_actor(self.actor_name, namespace=NAMESPACE)
            except ValueError:
                raise HostLost(f"device {self.serial}: lab host {self.host} has no actor for it "
                               "(the host left the cluster, or the device is gone)") from None
        return self._actor

    def _call(self, method: str, *args, timeout_s: float = CALL_TIMEOUT_S,
              cancel: threading.Event | None = None):
        actor = self._handle()
        # A call that can be cancelled carries a token, by which the host stops it.
        token = None if cancel is None else uuid.uuid4().hex
        ref = getattr(actor, method).remote(*args, **({} if token is None else {"token": token}))
        try:
            return _get(ref, self.host, timeout_s, cancel,
                        on_cancel=lambda: actor.cancel.remote(token))
        except HostLost:
            self._actor = None  # looked up anew: Ray or the agent may have made it again
            raise

    def state(self) -> str:
        if self.actor_name is None:
            return self.listed_state
        try:
            return self._call("state")
        except HostLost:
            return NOT_FOUND

    def identity(self) -> str | None:
        if self.actor_name is None or self.listed_state != ONLINE:
            return self.device.get("identity")
        try:
            return self._call("identity")
        except DeviceError:
            return None

    def info(self):
        return self._call("info")

    def files_to_send(self, files: list[TargetFile]) -> list[TargetFile]:
        return self._call("files_to_send", files)

    def send_files(self, files: list[TargetFile],
                   progress: Callable[[int], None] | None = None) -> int:
        on_host = [TargetFile(Path(self.provider.host_copy(self.host, f)), f.remote, f.sha256,
                              f.mode) for f in files]
        sent = self._call("send_files", on_host,
                          timeout_s=CALL_TIMEOUT_S + self.timeout_s * max(1, len(files)))
        if progress is not None:
            progress(sent)
        return sent

    def shell(self, command: str, timeout_s: float | None = None,
              cancel: threading.Event | None = None):
        deadline_s = self.timeout_s if timeout_s is None else timeout_s
        return self._call("shell", command, deadline_s, timeout_s=deadline_s + ANSWER_MARGIN_S,
                          cancel=cancel)

    def read_file(self, remote: str, max_bytes: int) -> bytes | None:
        return self._call("read_file", remote, max_bytes)

    def telemetry(self):
        return self._call("telemetry")

    def recover(self, deadline_s: float, stop: threading.Event | None = None) -> None:
        """Wait for the device on its host; a host that left is waited for too (it may join
        again within the deadline), then HostLost."""
        end = time.monotonic() + deadline_s
        while True:
            if stop is not None and stop.is_set():
                raise Cancelled(f"{self.serial}: stopped waiting for the device")
            left = end - time.monotonic()
            try:
                self._call("recover", max(left, 0.1), timeout_s=max(left, 0.1) + ANSWER_MARGIN_S,
                           cancel=stop)
                return
            except HostLost:
                if time.monotonic() + LOST_POLL_S >= end:
                    raise HostLost(f"lab host {self.host} left the cluster and did not come "
                                   f"back within {deadline_s:g} s") from None
                if stop is not None:
                    stop.wait(LOST_POLL_S)
                else:
                    time.sleep(LOST_POLL_S)


def _get(ref, host: str, timeout_s: float = CALL_TIMEOUT_S,
         cancel: threading.Event | None = None, on_cancel: Callable[[], object] | None = None):
    """The value of a call to a lab host: its own errors as they were raised there (DeviceError,
    CommandTimeout, Cancelled...), a host that is gone or silent as HostLost."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

    end = time.monotonic() + timeout_s
    cancelled = False
    try:
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_S)
            if ready:
                return ray.get(ref)
            if cancel is not None and cancel.is_set() and not cancelled:
                cancelled = True  # the host stops the call; its Cancelled comes back here
                if on_cancel is not None:
                    on_cancel()
                end = min(end, time.monotonic() + ANSWER_MARGIN_S)
            if time.monotonic() > end:
                if cancelled:
                    raise Cancelled(f"lab host {host}: stopped")
                raise HostLost(f"lab host {host} did not answer within {timeout_s:g} s")
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, BenchError):
            raise cause from None
        raise DeviceError(f"lab host {host}: {_first_line(cause or exc)}") from None
    except (RayActorError, GetTimeoutError) as exc:
        raise HostLost(f"lab host {host} is gone ({_first_line(exc)})") from None
    except RayError as exc:
        raise HostLost(f"lab host {host}: {_first_line(exc)}") from None
