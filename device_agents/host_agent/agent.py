"""What runs on a lab host of a Ray cluster: one `HostAgent` per host and one `DeviceActor` per
phone, each placed on the host by its `bench-host:NAME` resource (the host joined with it).

The device actor is the far half of harness.targets.cluster.RayTarget: it drives its phone
through this host's own adb server (an AdbTarget), so pushes and shell commands never cross the
network and the adb server never listens beyond the host. The agent lists the host's devices,
adds an actor for each phone that comes and retires the actor of a phone gone for a while, and
keeps the artifacts the controller ships (once per host, through Ray's object store) in a
content-addressed folder of the host.

Plain classes: `ray.remote` is applied where the actors are made (`start_agent`,
`HostAgent._actor_for`), so importing this module neither imports nor starts Ray.
"""
from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from harness.targets.adb.discovery import DeviceTarget, list_targets
from harness.targets.adb.session import AdbServer, DeviceSession
from harness.errors import DeviceError
from harness.benchmark.jobs import device_identity
from harness.targets.adb.provider import AdbTarget
from harness.targets.base import ONLINE, TargetFile

NAMESPACE = "bench"
AGENT_PREFIX = "bench-agent:"
DEVICE_PREFIX = "bench-device:"
# Each actor takes this much of its host's `bench-host:NAME` resource (the host has 1.0):
# the resource pins it to the host, the small share lets a host keep up to 1000 of them.
HOST_SHARE = 0.001
POLL_S = 2.0
RETIRE_AFTER_S = 60.0     # a phone unlisted this long loses its actor
PROPS_TIMEOUT_S = 10.0
ACTOR_CONCURRENCY = 8     # a launch, its cancel and the controller's other calls at once


def host_resource(host: str) -> str:
    return f"bench-host:{host}"


def actor_options(host: str, name: str) -> dict:
    """Placed on `host`, restarted by Ray when its process dies, a launch never re-run by Ray
    (the controller's runner decides what is retried)."""
    return dict(name=name, namespace=NAMESPACE, num_cpus=0,
                resources={host_resource(host): HOST_SHARE}, max_restarts=-1,
                max_task_retries=0, max_concurrency=ACTOR_CONCURRENCY)


class DeviceActor:
    """One phone of this host, through the host's adb server."""

    def __init__(self, serial: str, server: AdbServer, host: str):
        self.serial, self.host = serial, host
        self._target = AdbTarget(DeviceTarget(serial, server, ONLINE))
        self._cancels: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def pid(self) -> int:
        return os.getpid()

    def state(self) -> str:
        return self._target.state()

    def identity(self) -> str | None:
        return self._target.identity()

    def info(self):
        return self._target.info()

    def files_to_send(self, files: list[TargetFile]) -> list[TargetFile]:
        return self._target.files_to_send(files)

    def send_files(self, files: list[TargetFile]) -> int:
        """`files` name this host's copies (HostAgent.stage)."""
        return self._target.send_files(files)

    def shell(self, command: str, timeout_s: float | None, token: str | None = None):
        """`token`: the controller can stop the call with cancel(token)."""
        with self._cancellable(token) as cancel:
            return self._target.shell(command, timeout_s=timeout_s, cancel=cancel)

    def recover(self, deadline_s: float, token: str | None = None) -> None:
        with self._cancellable(token) as cancel:
            self._target.recover(deadline_s, cancel)

    def cancel(self, token: str) -> None:
        """Stop the call running under `token` (the controller's Ctrl-C)."""
        self._cancel_event(token).set()

    def read_file(self, remote: str, max_bytes: int) -> bytes | None:
        return self._target.read_file(remote, max_bytes)

    def telemetry(self):
        return self._target.telemetry()

    def _cancel_event(self, token: str) -> threading.Event:
        with self._lock:
            return self._cancels.setdefault(token, threading.Event())

    @contextmanager
    def _cancellable(self, token: str | None):
        """The call's cancel event (None: not cancellable), forgotten when the call ends."""
        if token is None:
            yield None
            return
        try:
            yield self._cancel_event(token)
        finally:
            with self._lock:
                self._cancels.pop(token, None)


class HostAgent:
    """The devices of one lab host and their actors; the host's copy of shipped artifacts."""

    def __init__(self, host: str, servers: list[AdbServer], staging_dir: str,
                 poll_s: float = POLL_S, retire_after_s: float = RETIRE_AFTER_S):
        import ray

        self.host, self.servers = host, list(servers)
        self.node_id = ray.get_runtime_context().get_node_id()
        self.hostname = socket.gethostname()
        self.staging = Path(staging_dir)
        self.retire_after_s = retire_after_s
        self._devices: dict[tuple[str, str], dict] = {}  # (server address, serial) -> entry
        self._lock = threading.Lock()
        self.staged: dict[str, int] = {}  # sha256 -> times written here (1 per host expected)
        self.staged_bytes = 0
        self.refresh()
        threading.Thread(target=self._poll, args=(poll_s,), daemon=True,
                         name="bench-agent-poll").start()

    # -- devices ----------------------------------------------------------------------------
    def devices(self) -> list[dict]:
        """Every device this host lists now, with what selectors match on and its actor."""
        self.refresh()
        with self._lock:
            return [{k: v for k, v in entry.items() if k != "actor"}
                    for entry in self._devices.values()]

    def where(self) -> dict:
        return {"host": self.host, "node_id": self.node_id, "hostname": self.hostname,
                "pid": os.getpid(), "adb_servers": [s.address for s in self.servers],
                "staged": dict(self.staged), "staged_bytes": self.staged_bytes}

    def refresh(self) -> None:
        listed, _unreachable = list_targets(self.servers)
        now = time.monotonic()
        with self._lock:
            seen = set()
            for target in listed:
                key = (target.server.address, target.serial)
                seen.add(key)
                entry = self._devices.get(key)
                if entry is None or (entry["actor"] is None and target.state == ONLINE):
                    entry = self._new_entry(target)
                    self._devices[key] = entry
                entry["state"], entry["last_seen"] = target.state, now
            for key, entry in list(self._devices.items()):
                if key not in seen:
                    entry["state"] = "not listed"
                    if now - entry["last_seen"] > self.retire_after_s:
                        self._retire(key)

    def _new_entry(self, target: DeviceTarget) -> dict:
        props = {}
        if target.state == ONLINE:
            try:
                props = DeviceSession(target.serial, target.server,
                                      timeout_s=PROPS_TIMEOUT_S).getprops()
            except DeviceError:
                props = {}
        identity = device_identity(props, target.serial) if props else None
        actor = self._actor_for(target, identity) if identity else None
        return {"serial": target.serial, "identity": identity, "host": self.host,
                "node_id": self.node_id, "adb_server": target.server.address,
                "actor_name": f"{DEVICE_PREFIX}{identity}" if actor is not None else None,
                "model": props.get("ro.product.model"), "abi": props.get("ro.product.cpu.abi"),
                "state": target.state, "last_seen": time.monotonic(), "actor": actor}

    def _actor_for(self, target: DeviceTarget, identity: str):
        import ray

        remote = ray.remote(DeviceActor).options(**actor_options(self.host,
                                                                 f"{DEVICE_PREFIX}{identity}"))
        try:
            return remote.remote(target.serial, target.server, self.host)
        except ValueError:  # the name is taken: this agent restarted, its actor lives on
            return ray.get_actor(f"{DEVICE_PREFIX}{identity}", namespace=NAMESPACE)

    def _retire(self, key) -> None:
        import ray

        entry = self._devices.pop(key)
        if entry["actor"] is not None:
            ray.kill(entry["actor"], no_restart=True)

    def _poll(self, poll_s: float) -> None:
        while True:
            time.sleep(poll_s)
            try:
                self.refresh()
            except Exception:  # a bad poll must not end the agent; the next one tries again
                pass

    # -- artifacts --------------------------------------------------------------------------
    def stage(self, sha256: str, name: str, data: bytes) -> str:
        """This host's copy of a file the controller shipped (content-addressed, kept)."""
        path = self.staging / sha256 / name
        if path.is_file() and path.stat().st_size == len(data):
            return str(path)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise DeviceError(f"lab host {self.host}: shipped {name} does not match its sha256")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(data)
        os.replace(partial, path)
        self.staged[sha256] = self.staged.get(sha256, 0) + 1
        self.staged_bytes += len(data)
        return str(path)

    def has(self, sha256: str, name: str) -> str | None:
        """This host's copy, when it already has one (a file is shipped only once per host)."""
        path = self.staging / sha256 / name
        return str(path) if path.is_file() else None


def start_agent(host: str, servers: list[AdbServer], staging_dir: str):
    """The agent of `host` (this process must be a Ray driver): detached, so it outlives the
    `bench lab join` that started it; made anew by Ray on the host when its process dies."""
    import ray

    options = actor_options(host, f"{AGENT_PREFIX}{host}")
    options.update(lifetime="detached", get_if_exists=True)
    return ray.remote(HostAgent).options(**options).remote(host, servers, staging_dir)
