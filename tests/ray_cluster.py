"""A real Ray cluster of several nodes on this machine, for the lab-of-many-hosts tests.

Ray's servers listen on every interface and have no option to bind one, so the cluster runs in
a network namespace of this test's own (`loopback_only_network`) that has nothing but a
loopback interface: whatever Ray opens, only this machine's loopback can reach it. Every node is
a separate raylet (`ray start`), as on a real lab host; token authentication is on, as the
README asks of a real lab; every process the cluster started is ended by pid at the end.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

CLONE_NEWNET = 0x40000000
RAY_START_TIMEOUT_S = 120.0
# Quick to notice a dead node (Ray's defaults take about 15 s): read by the head's GCS.
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                   "RAY_health_check_failure_threshold": "3"}
# Token authentication on (the README asks it of a real lab), and the quick node-death checks;
# set when this module is imported, before Ray is: Ray reads them once per process.
RAY_ENV = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0", **FAST_NODE_DEATH}
os.environ.update(RAY_ENV)
# A small object store: the default takes 30 % of the machine's memory per node.
NODE_ARGS = ("--node-ip-address=127.0.0.1", "--object-store-memory=100000000")


def can_make_network_namespace() -> str | None:
    """Why this process cannot make one (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (a network namespace of the test's own)"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "unshare -n is not allowed here"
    return None


@contextmanager
def loopback_only_network() -> Iterator[None]:
    """Run the block (this thread, and every thread and process it starts) in a new network
    namespace whose only interface is loopback; the thread's own namespace is back after."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            yield
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the test's network")
    finally:
        os.close(own)


@dataclass
class Cluster:
    address: str
    temp_dir: Path
    session: str

    def pids(self, marker: str | None = None) -> list[int]:
        """pids of this cluster's processes (those whose command line names `marker`, default
        the session) and all their descendants, children first."""
        marker = marker or self.session
        procs = _process_table()
        roots = [pid for pid, (_ppid, cmd) in procs.items() if marker in cmd]
        ordered: list[int] = []

        def visit(pid: int) -> None:
            for child, (ppid, _cmd) in procs.items():
                if ppid == pid and child not in ordered:
                    visit(child)
            if pid not in ordered:
                ordered.append(pid)

        for root in roots:
            visit(root)
        return ordered

    def kill_node(self, host: str) -> list[int]:
        """SIGKILL the raylet of lab host `host` and every process under it (its workers)."""
        pids = self.pids(f"bench-host:{host},")
        _kill(pids)
        return pids


def _process_table() -> dict[int, tuple[int, str]]:
    table = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        table[int(proc.name)] = (ppid, cmd)
    return table


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@contextmanager
def ray_head(port: int) -> Iterator[Cluster]:
    """A Ray head on 127.0.0.1:`port` (RAY_ENV, no dashboard); its processes, and those
    of every node that joined it, are killed by pid when the block ends."""
    temp_dir = Path(tempfile.mkdtemp(prefix="bray-", dir="/tmp"))  # short: socket path limits
    cluster = None
    try:
        subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
                        "--port", str(port), "--include-dashboard", "false", "--num-cpus", "1",
                        "--temp-dir", str(temp_dir), "--disable-usage-stats", *NODE_ARGS],
                       check=True, capture_output=True, timeout=RAY_START_TIMEOUT_S)
        session = os.path.basename(os.path.realpath(temp_dir / "session_latest"))
        cluster = Cluster(f"127.0.0.1:{port}", temp_dir, session)
        yield cluster
    finally:
        try:
            import ray

            ray.shutdown()
        except ImportError:
            pass
        if cluster is not None:
            for _ in range(3):  # a dying raylet may still start a worker
                _kill(cluster.pids())
                time.sleep(0.2)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)
