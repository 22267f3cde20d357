"""`bench lab join --address HEAD:PORT`: make this host a lab host of a Ray cluster.

Starts a Ray node here (`ray start --address`) that carries the resource `bench-host:NAME`,
then the host agent on it (agent.start_agent), which lists this host's adb devices and keeps
an actor per phone. The adb servers stay this host's own: only Ray's ports face the network,
and only as the cluster's head allows (README, Lab of many hosts).
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.targets.adb.session import AdbServer
from harness.errors import UserError
from harness.targets.cluster import connect, head_address

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
RAY_START_TIMEOUT_S = 120.0
AGENT_TIMEOUT_S = 120.0


@dataclass
class Joined:
    host: str
    node_id: str
    devices: list[dict]


def join_lab(address: str, name: str | None = None, servers: list[AdbServer] | None = None,
             ray_args: tuple[str, ...] = (), staging_dir: Path | None = None) -> Joined:
    """Join the cluster at `address` as lab host `name` (default: this host's name) with the
    devices of `servers` (default: this host's adb servers: configured, the virtual lab's, or
    the local default)."""
    from harness.targets.adb.discovery import known_servers
    from harness.paths import cache_dir

    name = name or socket.gethostname().split(".")[0]
    if not re.fullmatch(NAME_PATTERN, name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (a host name)")
    head_address(address, "--address")
    try:
        import ray  # noqa: F401  (installed? the one-line error below otherwise)
    except ImportError:
        raise UserError("bench lab join: Ray is not installed; pip install 'bench[ray]'") \
            from None
    servers = servers if servers is not None else known_servers()
    staging_dir = staging_dir or cache_dir() / "shipped"
    _ray_start(address, name, ray_args)
    return _start_agent(address, name, servers, staging_dir)


def ray_start_command(address: str, name: str, ray_args: tuple[str, ...] = ()) -> list[str]:
    """A Ray node of this host. Its agents' ports are left to the system (0): a host may run
    more than one node (a head that is also a lab host; two lab hosts on one test machine)."""
    return [sys.executable, "-m", "ray.scripts.scripts", "start", "--address", address,
            "--resources", json.dumps({f"bench-host:{name}": 1}), "--num-cpus", "1",
            "--disable-usage-stats", "--dashboard-agent-listen-port", "0",
            "--dashboard-agent-grpc-port", "0", "--metrics-export-port", "0",
            "--runtime-env-agent-port", "0", *ray_args]


def _ray_start(address: str, name: str, ray_args: tuple[str, ...]) -> None:
    try:
        done = subprocess.run(ray_start_command(address, name, ray_args), capture_output=True,
                              text=True, timeout=RAY_START_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError(f"--address {address}: `ray start` did not finish within "
                        f"{RAY_START_TIMEOUT_S:g} s; is the head up there?") from None
    if done.returncode != 0:
        lines = [l for l in (done.stderr + done.stdout).splitlines() if l.strip()]
        reason = next((l for l in reversed(lines) if "Error" in l or "error" in l),
                      lines[-1] if lines else f"exit {done.returncode}")
        raise UserError(f"--address {address}: this host could not join the Ray cluster there "
                        f"({reason.strip()}); start the head with `ray start --head --port PORT`")


def _start_agent(address: str, name: str, servers: list[AdbServer], staging_dir: Path) -> Joined:
    import ray

    from device_agents.host_agent.agent import start_agent

    connected = ray.is_initialized()  # this process already drives the cluster (a test)
    connect(address, "--address")
    try:
        agent = start_agent(name, servers, str(staging_dir))
        where = _when_up(lambda: agent.where.remote())
        devices = _when_up(lambda: agent.devices.remote())
    finally:
        if not connected:
            ray.shutdown()
    return Joined(name, where["node_id"], devices)


def _when_up(call):
    """The call's value once the agent answers: an agent of this name that lived on a node of
    this host before is being restarted by Ray on the new one, and says so until it is up."""
    import ray
    from ray.exceptions import ActorUnavailableError

    end = time.monotonic() + AGENT_TIMEOUT_S
    while True:
        try:
            return ray.get(call(), timeout=max(end - time.monotonic(), 1))
        except ActorUnavailableError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)
