"""Issue 9.2 on a real virtual lab: Ctrl-C stops a `bench run` (a real subprocess, a real SIGINT)
even while a device hangs: no new launch, the running one killed on the device, finished samples
kept, the run `interrupted` and resumable, exit 130; a second Ctrl-C ends it at once."""
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device_agents.virtual.faults import clear_faults, set_faults
from harness.targets.adb.session import DeviceSession
from harness.targets.device_lock import LOCK_DIR
from harness.targets.adb.virtual_lab import lab_down, lab_up
from harness.run import resume_benchmarks
from harness.results.store import Store

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
# Only how long to wait before giving up, never what a test asserts.
GIVE_UP_S = 90
RESUME_LINE = re.compile(r"interrupted: (\d+) of (\d+) launch\(es\) stored; finish with: "
                         r"bench run --resume (\S+) --store (\S+)")


@pytest.fixture(scope="module")
def lab():
    state = lab_up(1)
    yield state
    lab_down()


@pytest.fixture
def device(lab):
    dev = lab.devices[0]
    yield dev
    clear_faults(Path(dev.state_dir))
    os.kill(dev.pid, signal.SIGCONT)  # a test may have frozen it
    # A bench quit at once leaves its lock behind (the next bench would take it over, its
    # holder being dead); the next test starts from a device nobody holds.
    DeviceSession(dev.serial, lab.server).shell(f"rm -r -f {LOCK_DIR}")


def start_bench(tmp_path: Path, serial: str, model: Path, trials: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "harness", "run", "--devices", serial, "--model", str(model),
            "--trials", str(trials), "--no-peak-memory", "--num-runs", "3", "--warmup-runs", "1",
            "--min-secs", "0.05", "--max-secs", "30", "--store", str(tmp_path / "bench.db"),
            "--reports-dir", str(tmp_path / "reports")]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(args, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(tmp_path / "stdout.txt", "w"),
                            stderr=open(tmp_path / "stderr.txt", "w"))


def wait_for(what: str, condition, proc: subprocess.Popen | None = None, tmp_path=None):
    deadline = time.monotonic() + GIVE_UP_S
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    output = (tmp_path / "stderr.txt").read_text() if tmp_path else ""
    pytest.fail(f"gave up waiting for {what}\n{output[-3000:]}")


def ok_samples(store_path: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store_path}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT count(*) FROM measurements WHERE status='ok'").fetchone()[0]
    except sqlite3.Error:
        return 0  # not created yet


def benchmark_processes(state_dir: str) -> dict[int, str]:
    """pid -> process state (R, S, T = stopped...) of benchmark_model processes running inside
    this device's sandbox."""
    fs_root = str(Path(state_dir).resolve() / "fs").encode()
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"benchmark_model" not in (proc / "cmdline").read_bytes() \
                    or fs_root not in (proc / "environ").read_bytes():
                continue
            found[int(proc.name)] = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
    return found


def hung_launch(state_dir: str) -> bool:
    return "T" in benchmark_processes(state_dir).values()


def finish(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=GIVE_UP_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_kills_the_hung_launch_keeps_the_samples_and_resume_finishes(
        device, tmp_path, tiny_model):
    store_path = tmp_path / "bench.db"
    proc = start_bench(tmp_path, device.serial, tiny_model, trials=6)
    try:
        wait_for("2 stored samples", lambda: ok_samples(store_path) >= 2, proc, tmp_path)
        # From the next launch on, benchmark_model stops dead (SIGSTOP) on the device.
        set_faults(Path(device.state_dir), benchmark_hang=True)
        wait_for("a hung launch", lambda: hung_launch(device.state_dir), proc, tmp_path)
        proc.send_signal(signal.SIGINT)
    finally:
        code = finish(proc)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 130, stderr[-3000:]
    [(stored, planned, run_id, store_arg)] = RESUME_LINE.findall(stderr)
    assert int(planned) == 6 and 2 <= int(stored) < 6 and Path(store_arg) == store_path
    assert "launch was killed and is not stored" in stderr

    store = Store(store_path)
    assert store.run(run_id)["status"] == "interrupted"
    before = store.measurements(run_id)
    # Every launch that finished is stored, as ok; the killed one left no record at all.
    assert len(before) == int(stored) and all(m.status == "ok" for m in before)
    store.close()
    # The device killed the stopped benchmark when bench closed its stream.
    wait_for("the device to kill the hung benchmark",
             lambda: not benchmark_processes(device.state_dir))

    clear_faults(Path(device.state_dir))
    result = resume_benchmarks(run_id, store_path)
    assert result.exit_code == 0, [m.error for m in result.measurements]
    after = Store(store_path).measurements(run_id)
    assert len(after) == 6 and len({m.job_key for m in after}) == 6
    assert after[: len(before)] == before
    assert Store(store_path).run(run_id)["status"] == "ok"


def test_a_second_ctrl_c_quits_at_once_even_with_a_frozen_device(device, tmp_path, tiny_model):
    set_faults(Path(device.state_dir), benchmark_hang=True)
    proc = start_bench(tmp_path, device.serial, tiny_model, trials=2)
    try:
        wait_for("a hung launch", lambda: hung_launch(device.state_dir), proc, tmp_path)
        # The whole device stops answering: the clean stop (restoring the device's settings,
        # releasing its lock) now waits on adb timeouts.
        os.kill(device.pid, signal.SIGSTOP)
        proc.send_signal(signal.SIGINT)
        wait_for("the first Ctrl-C to be taken",
                 lambda: "Ctrl-C again" in (tmp_path / "stderr.txt").read_text(), proc, tmp_path)
        proc.send_signal(signal.SIGINT)
        code = finish(proc)
    finally:
        os.kill(device.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert code == 130, stderr[-3000:]
    [(stored, planned, run_id, _store)] = RESUME_LINE.findall(stderr)
    assert (stored, planned) == ("0", "2")
    # It quit without waiting for the device threads: no tables, no summary.
    assert "launch(es) ok" not in (tmp_path / "stdout.txt").read_text()
    store = Store(tmp_path / "bench.db")
    assert store.run(run_id)["status"] == "interrupted"
    assert store.measurements(run_id) == []
    store.close()
    wait_for("the device to kill the hung benchmark",
             lambda: not benchmark_processes(device.state_dir))


def test_first_sigint_sets_the_stop_a_second_raises_and_the_handler_is_put_back():
    import threading

    from harness.benchmark.stop import STOP_MESSAGE, stop_on_sigint

    before = signal.getsignal(signal.SIGINT)
    stop, said = threading.Event(), []
    with pytest.raises(KeyboardInterrupt):
        with stop_on_sigint(stop, said.append):
            signal.raise_signal(signal.SIGINT)
            assert stop.is_set() and said == [STOP_MESSAGE]
            signal.raise_signal(signal.SIGINT)
            pytest.fail("the second SIGINT did not raise")
    assert signal.getsignal(signal.SIGINT) is before
