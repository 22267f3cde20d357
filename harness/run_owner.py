"""Who is making a run: its owner (host and pid, in the store's `runs` row) and a heartbeat the
owner renews while the run runs, so that `bench run --resume` never takes over a run that is
still being made.

On the owner's host, whether the owner's pid is alive decides (for this very process: whether
it is making the run right now), so a killed `bench` can be resumed at once. From another host
(a store on a shared disk) the pid says nothing, and the heartbeat decides: a run whose
heartbeat is younger than LEASE_S is still running.
"""
from __future__ import annotations

import os
import socket
import threading
from datetime import datetime, timezone

from harness.errors import BenchError, UserError
from harness.targets.locks import pid_alive, pid_namespace
from harness.results.schema import RunStatus, utc_now

HEARTBEAT_S = 5.0
LEASE_S = 60.0  # many heartbeats: a busy host that misses a few does not lose its run

_active: set[str] = set()  # the runs this process is making now
_active_lock = threading.Lock()


def this_owner() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def refuse_if_running(run: dict) -> None:
    """A UserError naming the run and its owner when the run is still being made."""
    if run["status"] != RunStatus.RUNNING:
        return
    run_id, host, pid = run["run_id"], run.get("host"), run.get("owner_pid")
    this_host, this_pid = this_owner()
    # Its pid means something here only in the same pid namespace (two containers may share a
    # host name); elsewhere only the heartbeat tells. Runs stored before namespaces: same.
    same_pids = host == this_host and run.get("owner_pidns") in (None, pid_namespace())
    if same_pids and pid is not None:
        with _active_lock:
            alive = run_id in _active if pid == this_pid else pid_alive(pid)
        if alive:
            raise UserError(f"--resume {run_id}: the run is still running (owner: pid {pid} on "
                            f"{host}, alive); let it finish, or stop that process first")
        return
    age_s = _age_s(run.get("heartbeat_at"))
    if age_s is not None and age_s < LEASE_S:
        raise UserError(f"--resume {run_id}: the run is still running (owner: pid {pid} on "
                        f"{host}, heartbeat {age_s:.0f} s ago); resume once it has stopped, "
                        f"{LEASE_S:g} s after its last heartbeat at the latest")


class RunOwnership:
    """While entered: the run is this process's, and its heartbeat is renewed every
    HEARTBEAT_S by a small thread."""

    def __init__(self, store, run_id: str, interval_s: float = HEARTBEAT_S):
        self.store, self.run_id, self.interval_s = store, run_id, interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "RunOwnership":
        with _active_lock:
            _active.add(self.run_id)
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.run_id}",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with _active_lock:
            _active.discard(self.run_id)
        if exc_type is not None:
            # Stopped, not running, whatever stopped it (a storage fault, a second Ctrl-C, a
            # bug): `--resume` finishes it, once there is room again after a storage fault.
            try:
                self.store.stop_run(self.run_id, utc_now(), RunStatus.INTERRUPTED)
            except BenchError:
                pass  # the disk is still full; the dead owner lets `--resume` take it anyway

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.store.heartbeat(self.run_id, utc_now())
            except BenchError:
                pass  # a full disk stops the run through its samples, not through this thread


def _age_s(timestamp: str | None) -> float | None:
    if not timestamp:
        return None
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - then).total_seconds()
