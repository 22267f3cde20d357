"""Per-device locks shared by bench processes: a second process waits, or reports the holder."""
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.config import BenchmarkSettings, RunConfig
from harness.targets.adb.session import DeviceSession
from harness.errors import DeviceError
from harness.targets.device_lock import LOCK_DIR, Lease, OnDeviceLock
from harness.targets.locks import DeviceBusy, DeviceLock, LockOwner, lock_file_name, pid_namespace
from harness.targets.adb.virtual_lab import LabState, lab_down, lab_up
from harness.run import run_benchmarks
from harness.results.store import Store

ROOT = Path(__file__).resolve().parent.parent

# A child bench process: takes the lock, says so, holds it until told to stop (stdin closes).
HOLDER = """
import sys
from pathlib import Path
from harness.targets.locks import DeviceLock
with DeviceLock(sys.argv[1], sys.argv[2], directory=Path(sys.argv[3])):
    print("held", flush=True)
    sys.stdin.read()
print("released", flush=True)
"""


def _child_env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock on (127.0.0.1:5555, lab-a); yields its Popen."""
    procs = []

    def start(serial="127.0.0.1:5555", server="lab-a"):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, serial, server, str(tmp_path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=_child_env())
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_second_process_is_told_busy_with_the_holders_pid(tmp_path, holder):
    proc = holder()
    lock = DeviceLock("127.0.0.1:5555", "lab-a", wait=False, directory=tmp_path)
    with pytest.raises(DeviceBusy) as info:
        lock.acquire()
    assert isinstance(info.value, DeviceError)  # runs record it like any device failure
    assert info.value.holder_pid == proc.pid
    assert str(proc.pid) in str(info.value) and "127.0.0.1:5555" in str(info.value)
    assert not lock.held
    # Same serial on another server, or another serial: a different lock, free.
    with DeviceLock("127.0.0.1:5555", "lab-b", wait=False, directory=tmp_path):
        pass
    with DeviceLock("127.0.0.1:5556", "lab-a", wait=False, directory=tmp_path):
        pass


def test_second_process_waits_until_the_holder_releases(tmp_path, holder):
    proc = holder()
    waiter = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, os; from pathlib import Path; from harness.targets.locks import DeviceLock\n"
         "with DeviceLock('127.0.0.1:5555', 'lab-a', wait=True, directory=Path(sys.argv[1])):\n"
         "    print('got', os.getpid(), flush=True)\n",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env=_child_env())
    try:
        # The waiter cannot finish while the holder has the lock...
        with pytest.raises(subprocess.TimeoutExpired):
            waiter.wait(timeout=1.5)
        assert proc.poll() is None
        proc.stdin.close()  # ...and gets it once the holder lets go.
        assert proc.stdout.readline().strip() == "released"
        out, _ = waiter.communicate(timeout=30)
        assert out.split() == ["got", str(waiter.pid)]
    finally:
        if waiter.poll() is None:
            waiter.kill()


def test_wait_with_timeout_ends_busy(tmp_path, holder):
    proc = holder()
    with pytest.raises(DeviceBusy, match=f"process {proc.pid} after waiting 0.3 s"):
        DeviceLock("127.0.0.1:5555", "lab-a", wait=True, timeout_s=0.3,
                   directory=tmp_path).acquire()


def test_a_killed_holder_frees_the_device(tmp_path, holder):
    proc = holder()
    proc.kill()
    proc.wait()
    with DeviceLock("127.0.0.1:5555", "lab-a", wait=False, directory=tmp_path) as lock:
        assert lock.holder_pid() == os.getpid()
    assert lock.holder_pid() is None  # released: no stale pid left behind


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    # Threads of one bench run must not share a device either.
    with DeviceLock("R58M", "local", wait=False, directory=tmp_path):
        with pytest.raises(DeviceBusy, match=str(os.getpid())):
            DeviceLock("R58M", "local", wait=False, directory=tmp_path).acquire()


def test_lock_file_names_are_safe_and_distinct():
    names = {lock_file_name(server, serial) for server, serial in [
        ("local", "127.0.0.1:5555"), ("local", "127.0.0.1_5555"), ("lab/../x", "a b"),
        ("local", "../../etc/passwd")]}
    assert len(names) == 4
    assert all("/" not in n and " " not in n and ":" not in n for n in names)


def test_default_directory_is_under_the_state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_STATE_DIR", str(tmp_path / "state"))
    with DeviceLock("X1", "local", wait=False) as lock:
        assert lock.path.parent == tmp_path / "state" / "locks"
        assert lock.path.read_text().strip() == str(os.getpid())


# -- the lock kept on the device (issue 9.3), on a real virtual lab ----------------------------
LIVE_FOREIGN = "user=ghost host=elsewhere pid=4242 pidns=- run=old token=dead expires_at={}"
GIVE_UP_S = 90  # only how long to wait before giving up, never what a test asserts


@pytest.fixture(scope="module")
def lab():
    state = lab_up(1)
    yield state
    lab_down()


@pytest.fixture
def device(lab):
    """(the lab's device, a session on it); the device is left unlocked and without faults."""
    dev = lab.devices[0]
    session = DeviceSession(dev.serial, lab.server)
    yield dev, session
    clear_faults(Path(dev.state_dir))
    session.shell(f"rm -r -f {LOCK_DIR} {LOCK_DIR}.takeover")


def _write_lock(session, owner_line: str) -> None:
    assert session.shell(f"mkdir {LOCK_DIR} && echo '{owner_line}' > {LOCK_DIR}/owner").status == 0


def _lock_exists(session) -> bool:
    return session.shell(f"ls -d {LOCK_DIR}").status == 0


def _device_now(session) -> int:
    return int(session.shell("date +%s").stdout)


def _wait_for(what, condition):
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def _bench(tmp_path: Path, name: str, serial: str, model: Path, *extra: str) -> subprocess.Popen:
    """`bench run` in a process with a BENCH_STATE_DIR of its own, reaching the lab's adb server
    through bench.toml (as a second controller sharing that server would)."""
    config = tmp_path / "bench.toml"
    config.write_text(f'[lab.servers]\nshared = "127.0.0.1:{LabState.load().adb_port}"\n')
    env = dict(_child_env(), BENCH_STATE_DIR=str(tmp_path / f"state-{name}"),
               PYTHONUNBUFFERED="1")
    args = ["--config", str(config), "--devices", serial, "--model", str(model), "--trials", "1",
            "--no-peak-memory", "--num-runs", "3", "--min-secs", "0.05", "--max-secs", "30",
            "--store", str(tmp_path / f"{name}.db"), "--reports-dir", str(tmp_path / name)]
    return subprocess.Popen([sys.executable, "-m", "harness", "run", *args, *extra], env=env,
                            cwd=tmp_path, stdin=subprocess.DEVNULL,
                            stdout=open(tmp_path / f"{name}.out", "w"),
                            stderr=open(tmp_path / f"{name}.err", "w"))


def test_a_bench_with_another_state_dir_is_refused_naming_the_holder_then_runs_after(
        lab, device, tmp_path, tiny_model):
    dev, session = device
    set_faults(Path(dev.state_dir), benchmark_hang=True)  # the holder's launch never ends
    holder = _bench(tmp_path, "a", dev.serial, tiny_model)
    waiter = None
    try:
        _wait_for("the holder's launch", lambda: _benchmark_stopped(dev.state_dir))
        clear_faults(Path(dev.state_dir))
        with sqlite3.connect(tmp_path / "a.db") as conn:
            [(holder_run,)] = conn.execute("SELECT run_id FROM runs").fetchall()
        waiter = _bench(tmp_path, "c", dev.serial, tiny_model, "--busy", "wait")

        # This process has another BENCH_STATE_DIR (the test session's): only the device's own
        # lock can keep it off.
        refused = run_benchmarks(RunConfig(
            devices=dev.serial, model=str(tiny_model), busy="fail", peak_memory=False,
            benchmark=BenchmarkSettings(num_runs=3, min_secs=0.05, max_secs=30),
            store_path=tmp_path / "b.db", reports_dir=tmp_path / "b"))
        [m] = refused.measurements
        assert m.status == "failed" and m.failure_kind == "device" and m.command is None
        assert "busy: held by " in m.error and socket.gethostname() in m.error
        assert f"pid {holder.pid}, run {holder_run}" in m.error

        _wait_for("the waiter to wait", lambda: "waiting for the device lock held by "
                  in (tmp_path / "c.err").read_text())
        assert _benchmark_stopped(dev.state_dir)  # the holder still has the device
        holder.send_signal(signal.SIGINT)  # it lets go ...
        assert holder.wait(timeout=GIVE_UP_S) == 130
        assert waiter.wait(timeout=GIVE_UP_S) == 0, (tmp_path / "c.err").read_text()[-3000:]
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    waiter_store = Store(tmp_path / "c.db")
    [done] = waiter_store.measurements(waiter_store.runs()[0]["run_id"])
    assert done.status == "ok"  # ... and the waiter measured on a device of its own
    assert not _lock_exists(session)  # the last holder released it


def test_an_expired_lease_is_taken_over(lab, device, tmp_path, tiny_model):
    dev, session = device
    _write_lock(session, LIVE_FOREIGN.format(_device_now(session) - 5))  # ran out 5 s ago
    lines = []
    result = run_benchmarks(RunConfig(
        devices=dev.serial, busy="fail", peak_memory=False, model=str(tiny_model),
        benchmark=BenchmarkSettings(num_runs=3, min_secs=0.05, max_secs=30),
        store_path=tmp_path / "bench.db", reports_dir=tmp_path / "reports"), log=lines.append)
    assert result.exit_code == 0, [m.error for m in result.measurements]
    assert any("took over the stale device lock of ghost@elsewhere pid 4242, run old" in line
               for line in lines)
    assert not _lock_exists(session)


def test_a_live_lease_holds_is_renewed_and_a_dead_local_holder_loses_it(device):
    _dev, session = device
    me = LockOwner.this_process("run-1")
    # Another host's lease, still running: never taken, and the refusal names its holder.
    _write_lock(session, LIVE_FOREIGN.format(_device_now(session) + 600))
    with pytest.raises(DeviceBusy, match=r"held by ghost@elsewhere pid 4242, run old .*lease "
                                         r"ends in \d+ s"):
        OnDeviceLock(session, me, wait=False).acquire()
    session.shell(f"rm -r {LOCK_DIR}")

    # A holder of this host that is gone: its lock is taken at once, lease or not.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = LockOwner(me.user, me.host, gone.pid, "run-0", pid_namespace())
    _write_lock(session, Lease(dead, "t0", _device_now(session) + 600).line())
    with OnDeviceLock(session, me, wait=False, lease_s=2) as lock:
        def lease() -> Lease:
            return Lease.parse(session.shell(f"cat {LOCK_DIR}/owner").stdout)

        first = lease()
        assert first.token == lock.token and first.owner == me
        _wait_for("the lease to be renewed", lambda: lease().expires_at > first.expires_at)
        # Held and renewed: another bench (here another run of this process) is kept off.
        with pytest.raises(DeviceBusy, match=f"held by {me.user}@{me.host} pid {os.getpid()}, "
                                             "run run-1"):
            OnDeviceLock(session, LockOwner.this_process("run-2"), wait=False).acquire()
        assert not lock.lost
    assert not _lock_exists(session)


def _benchmark_stopped(state_dir: str) -> bool:
    """Whether a benchmark_model process inside this device's sandbox is stopped (hung)."""
    fs_root = str(Path(state_dir).resolve() / "fs").encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"benchmark_model" in (proc / "cmdline").read_bytes() \
                    and fs_root in (proc / "environ").read_bytes() \
                    and (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return True
        except (OSError, IndexError):
            continue
    return False
