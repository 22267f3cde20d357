"""Issue 9, point 4 on a real virtual lab: runs that can be compared and resumed safely.

`latest` is the newest run that finished ok, never a failed or running one; a device is keyed by
its stable identity (`ro.serialno`), so runs before and after `bench lab down && bench lab up`
share keys; `--resume` of a run whose owner still lives is refused, and finishes it once the
owner is gone. Nothing is mocked."""
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.regress.compare import compare, resolve_run_ref
from harness.config import RunConfig
from harness.errors import UserError
from harness.results.history import history_rows
from harness.targets.adb.virtual_lab import LabState, lab_down, lab_up
from harness.results.schema import RunStatus
from harness.run import resume_benchmarks, run_benchmarks
from harness.results.store import Store
from tests.virtual_lab_fixtures import FAST_BENCHMARK as FAST

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lab():
    state = lab_up(1)
    yield state
    lab_down()  # whichever lab is up by then (a test restarts it)


def config_for(store_path: Path, reports_dir: Path, **kw) -> RunConfig:
    kw.setdefault("benchmark", FAST)
    kw.setdefault("peak_memory", False)
    kw.setdefault("variants", ["baseline"])  # not the default model's three
    return RunConfig(store_path=store_path, reports_dir=reports_dir, **kw)


def test_runs_before_and_after_a_lab_restart_share_their_keys(lab, tmp_path):
    config = config_for(tmp_path / "bench.db", tmp_path / "reports", trials=3)
    first = run_benchmarks(config)
    serial_before = LabState.load().devices[0].serial
    lab_down()
    lab_up(1)
    serial_after = LabState.load().devices[0].serial
    second = run_benchmarks(config)
    assert first.exit_code == second.exit_code == 0
    store = Store(tmp_path / "bench.db")
    for run, adb_serial in ((first, serial_before), (second, serial_after)):
        samples = store.measurements(run.run_id)
        assert {m.device_id for m in samples} == {"VIRT0001"}    # the device's ro.serialno
        assert {m.device_serial for m in samples} == {adb_serial}  # the adb serial, recorded too
        assert all("|VIRT0001|" in m.job_key for m in samples)
    result = compare(store, first.run_id, second.run_id)
    assert result.latency and not result.only_in_base and not result.only_in_cand
    assert {v.key.device_serial for v in result.latency} == {"VIRT0001"}
    rows = history_rows(store, device="VIRT0001")
    assert len({r.key for r in rows}) == 1  # one key over time, across the restart
    assert [r.run_id for r in rows] == [first.run_id, second.run_id]


def test_resume_takes_the_job_keys_of_runs_stored_before_device_ids(lab, tmp_path):
    store_path = tmp_path / "bench.db"
    run_id = run_benchmarks(config_for(store_path, tmp_path / "reports", trials=2)).run_id
    serial = LabState.load().devices[0].serial
    # What a bench before device ids left: jobs keyed by the adb serial, no device_id, no
    # owner; killed after its first launch.
    old = sqlite3.connect(store_path)
    old.execute("UPDATE measurements SET job_key=replace(job_key, '|VIRT0001|', ?),"
                " device_id=NULL", (f"|{serial}|",))
    old.execute("DELETE FROM measurements WHERE trial=1")
    old.execute("UPDATE runs SET status='running', owner_pid=NULL, heartbeat_at=NULL,"
                " finished_at=NULL")
    old.commit()
    old.close()
    result = resume_benchmarks(run_id, store_path)
    after = Store(store_path).measurements(run_id)
    assert result.exit_code == 0
    assert [m.trial for m in after] == [0, 1]  # only the missing job ran
    assert (after[0].device_id, after[1].device_id) == (None, "VIRT0001")


def _run_in_child(store_path: Path, reports_dir: Path) -> subprocess.Popen:
    """A `bench run` of its own process: 12 launches of ≥ 0.5 s each on the lab's device."""
    code = ("import sys; from pathlib import Path; sys.path.insert(0, %r);"
            "from harness.config import RunConfig, BenchmarkSettings;"
            "from harness.run import run_benchmarks;"
            "run_benchmarks(RunConfig(store_path=Path(%r), reports_dir=Path(%r), trials=12,"
            " peak_memory=False, variants=['baseline'],"
            " benchmark=BenchmarkSettings(num_runs=3, min_secs=0.5,"
            " warmup_min_secs=0.01, max_secs=20)))") % (str(REPO), str(store_path),
                                                       str(reports_dir))
    return subprocess.Popen([sys.executable, "-c", code])


def _wait_for_samples(store_path: Path, n: int, proc: subprocess.Popen, known: list[str]
                      ) -> None:
    """Until the child's run has stored `n` samples (runs in `known` are not the child's)."""
    deadline = time.monotonic() + 180  # how long to wait, never what is asserted
    while time.monotonic() < deadline and proc.poll() is None:
        if store_path.exists():
            try:
                store = Store(store_path)
                done = sum(len(store.measurements(r["run_id"])) for r in store.runs()
                           if r["run_id"] not in known)
                store.close()
            except Exception:  # the child may be creating the store right now
                done = 0
            if done >= n:
                return
        time.sleep(0.2)
    raise AssertionError(f"the child run stored fewer than {n} samples (exit {proc.poll()})")


def test_latest_skips_failed_and_running_runs_and_resume_waits_for_the_owner(lab, tmp_path):
    store_path, reports = tmp_path / "bench.db", tmp_path / "reports"
    good = run_benchmarks(config_for(store_path, reports, trials=1))
    bad = run_benchmarks(config_for(store_path, reports, delegates=["gpu"]))  # no GPU: fails
    assert (good.exit_code, bad.exit_code) == (0, 1)
    child = _run_in_child(store_path, reports)
    try:
        _wait_for_samples(store_path, 2, child, [good.run_id, bad.run_id])
        store = Store(store_path)
        running = [r for r in store.runs() if r["status"] == RunStatus.RUNNING]
        assert [r["owner_pid"] for r in running] == [child.pid]
        running_id = running[0]["run_id"]
        assert resolve_run_ref(store, "latest") == good.run_id  # not the failed, not the running
        with pytest.raises(UserError, match=f"--resume {running_id}: .*pid {child.pid}"):
            resume_benchmarks(running_id, store_path)
        cli = subprocess.run([sys.executable, "-m", "harness", "run", "--resume", running_id,
                              "--store", str(store_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 2, cli.stderr
        assert running_id in cli.stderr and f"pid {child.pid}" in cli.stderr
        assert len(cli.stderr.strip().splitlines()) == 1
        assert child.poll() is None  # the refusal left the owner's run alone
    finally:
        child.kill()
        child.wait()
    before = store.measurements(running_id)
    assert resolve_run_ref(store, "latest") == good.run_id  # killed mid-run: still `running`
    result = resume_benchmarks(running_id, store_path)  # the owner is gone: it is finished
    after = Store(store_path).measurements(running_id)
    assert result.exit_code == 0
    assert after[: len(before)] == before  # nothing it finished was redone or lost
    assert len(after) == 12 and len({m.job_key for m in after}) == 12
    assert Store(store_path).run(running_id)["status"] == RunStatus.OK
    said = []
    assert resolve_run_ref(Store(store_path), "latest", log=said.append) == running_id
    assert said and running_id in said[0]
