"""Per-device locks shared by bench processes: a second process waits, or reports the holder."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import DeviceError
from harness.lab.locks import DeviceBusy, DeviceLock, lock_file_name

ROOT = Path(__file__).resolve().parent.parent

# A child bench process: takes the lock, says so, holds it until told to stop (stdin closes).
HOLDER = """
import sys
from pathlib import Path
from harness.lab.locks import DeviceLock
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
         "import sys, os; from pathlib import Path; from harness.lab.locks import DeviceLock\n"
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
