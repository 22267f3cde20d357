"""Issue 9, point 5 on a real virtual lab: storage faults lose nothing.

The disks are real: tmpfs file systems mounted for the test, filled up or turned read-only
while bench runs (tests.small_disk; skipped where mounting is not permitted). Each test checks
the outcome and that every finished measurement is in the store in the end."""
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import RunConfig
from harness.errors import StorageError
from harness.targets.adb.virtual_lab import lab_down, lab_up
from harness.results.schema import RunStatus
from harness.run import resume_benchmarks, run_benchmarks
from harness.results.store import SCHEMA_VERSION, Store
from tests.small_disk import fill, remount, tmpfs
from tests.virtual_lab_fixtures import FAST_BENCHMARK as FAST

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lab():
    state = lab_up(1)
    yield state
    lab_down()


def config_for(store_path: Path, reports_dir: Path, **kw) -> RunConfig:
    kw.setdefault("benchmark", FAST)
    kw.setdefault("peak_memory", False)
    kw.setdefault("variants", ["baseline"])  # not the default model's three
    return RunConfig(store_path=store_path, reports_dir=reports_dir, **kw)


def on_sample(number: int, action):
    """A run log that calls `action` once, as the run's `number`-th sample is about to be
    stored (the device runner logs each launch just before it commits it)."""
    seen = []

    def log(message: str) -> None:
        if "ms avg" in message:
            seen.append(message)
            if len(seen) == number:
                action()
    return log


def bench(*args: str) -> subprocess.CompletedProcess:
    """bench's real main(), so the messages and exit codes are the ones users get."""
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_disk_full_while_storing_keeps_the_sample_and_resume_completes_the_run(lab, tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        store_path = disk / "bench.db"
        fillers = []
        config = config_for(store_path, tmp_path / "reports", trials=4)
        with pytest.raises(StorageError) as stopped:
            run_benchmarks(config, log=on_sample(2, lambda: fillers.append(fill(disk))))
        message = str(stopped.value)
        journal = disk / "bench.db.journal"
        assert "database or disk is full" in message and "\n" not in message
        assert str(journal) in message and "--resume" in message
        store = Store(store_path)
        [run] = store.runs()
        stored = store.measurements(run["run_id"])
        journaled = [e.measurement for e in store.journal.entries(run["run_id"])]
        # The run stopped at once: one sample stored, the one in flight kept in the journal.
        assert [m.trial for m in stored] == [0] and [m.trial for m in journaled] == [1]
        assert journaled[0].status == "ok" and journaled[0].inference_avg_us > 0
        assert run["status"] in (RunStatus.RUNNING, RunStatus.INTERRUPTED)  # never ok or failed
        store.close()

        fillers[0].unlink()  # the user frees space
        result = resume_benchmarks(run["run_id"], store_path)
        assert result.exit_code == 0
        store = Store(store_path)
        final = store.measurements(run["run_id"])
        assert final[:2] == stored + journaled  # nothing that was measured was lost or redone
        assert sorted(m.trial for m in final) == [0, 1, 2, 3]
        assert store.run(run["run_id"])["status"] == RunStatus.OK
        assert not journal.exists()
        store.close()


def test_full_reports_dir_keeps_the_measurements_and_never_truncates_index_html(lab, tmp_path):
    store_path = tmp_path / "bench.db"
    with tmpfs(tmp_path / "reports", "1m") as reports:
        filler = fill(reports)
        with pytest.raises(StorageError) as stopped:
            run_benchmarks(config_for(store_path, reports, trials=2))
        message = str(stopped.value)
        assert f"reports dir {reports}" in message and "\n" not in message
        assert "No space left on device" in message and "bench report" in message
        store = Store(store_path)
        [run] = store.runs()
        run_id = run["run_id"]
        assert run["status"] == RunStatus.OK and len(store.measurements(run_id)) == 2
        store.close()
        assert not list((reports / run_id).iterdir())  # nothing half-written, no leftovers

        filler.unlink()  # room again: `bench report` writes the report now
        written = bench("report", run_id, "--store", str(store_path), "--reports-dir", str(reports))
        assert written.returncode == 0, written.stderr
        index = (reports / run_id / "index.html").read_bytes()
        assert index.rstrip().endswith(b"</html>")

        filler = fill(reports)  # full again: a rewrite fails, the earlier report stays whole
        again = bench("report", run_id, "--store", str(store_path), "--reports-dir", str(reports))
        assert again.returncode == 1
        assert f"reports dir {reports}" in again.stderr
        assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.stderr
        assert (reports / run_id / "index.html").read_bytes() == index
        assert sorted(p.name for p in (reports / run_id).iterdir() if p.name.startswith("."))\
            == []
        filler.unlink()


def test_reports_dir_turning_read_only_mid_run_keeps_the_measurements(lab, tmp_path):
    store_path = tmp_path / "bench.db"
    with tmpfs(tmp_path / "reports", "4m") as reports:
        with pytest.raises(StorageError) as stopped:
            run_benchmarks(config_for(store_path, reports, trials=2),
                           log=on_sample(1, lambda: remount(reports, "ro")))
        message = str(stopped.value)
        assert f"reports dir {reports}" in message and "Read-only file system" in message
        store = Store(store_path)
        [run] = store.runs()
        assert run["status"] == RunStatus.OK and len(store.measurements(run["run_id"])) == 2
        store.close()
        remount(reports, "rw")
        written = bench("report", run["run_id"], "--store", str(store_path),
                        "--reports-dir", str(reports))
        assert written.returncode == 0, written.stderr
        assert (reports / run["run_id"] / "index.html").read_bytes().rstrip().endswith(b"</html>")


@pytest.mark.parametrize("case", ["newer store", "not sqlite", "reports dir under a file"])
def test_a_store_or_reports_dir_bench_cannot_use_is_refused_before_measuring(lab, tmp_path,
                                                                            case):
    store_path, reports = tmp_path / "bench.db", tmp_path / "reports"
    if case == "newer store":
        newer = sqlite3.connect(store_path)
        newer.executescript(f"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                            f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION + 1}');")
        newer.commit()
        newer.close()
        words = "newer bench"
    elif case == "not sqlite":
        store_path.write_text("this is a CSV export, not a results store\n")
        words = "not a SQLite file"
    else:
        (tmp_path / "file").write_text("")
        reports, words = tmp_path / "file" / "reports", "--reports-dir"
    before = store_path.read_bytes() if store_path.exists() else None
    proc = bench("run", "--devices", "all", "--store", str(store_path),
                 "--reports-dir", str(reports), "--no-peak-memory")
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    if before is not None:
        assert store_path.read_bytes() == before  # never restamped, never written into
    else:
        assert not store_path.exists()  # refused before a store was made
