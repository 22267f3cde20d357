import os
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from harness.errors import StorageError, UserError
from harness.results.journal import Journal, journal_path
from harness.results.schema import (MEASUREMENT_FIELDS, Measurement, MeasurementStatus, RunStatus,
                             utc_now)
from harness.run_owner import LEASE_S, RunOwnership, refuse_if_running
from harness.results.store import SCHEMA_VERSION, Store
from tests.small_disk import fill, tmpfs


def test_each_measurement_is_committed_and_visible_to_another_connection(tmp_path):
    store = Store(tmp_path / "bench.db")
    store.start_run("r1", "2026-01-01T00:00:00", "0.1", "host", {"devices": "all"})
    store.add_measurement(Measurement("r1", "dev-a", "lab", "fp32", "ok", inference_avg_us=1234.5,
                                      inference_count=50))
    # A second connection (another process, or after a crash) sees it without any close/commit.
    other = sqlite3.connect(tmp_path / "bench.db")
    rows = other.execute("SELECT device_serial, inference_avg_us, inference_count FROM measurements").fetchall()
    assert rows == [("dev-a", 1234.5, 50)]
    store.add_measurement(Measurement("r1", "dev-b", "lab", "fp32", "failed", error="offline",
                                      failure_kind="device"))
    assert other.execute("SELECT count(*) FROM measurements").fetchone()[0] == 2


def test_measurements_round_trip_every_field(tmp_path):
    store = Store(tmp_path / "bench.db")
    original = Measurement(**{name: None for name in MEASUREMENT_FIELDS} |
                           {"run_id": "r", "device_serial": "s", "adb_server": "a",
                            "variant": "fp32", "status": "ok", "init_us": 1.5,
                            "nodes_total": 7, "delegate": "XNNPACK", "output_tail": "x\ny"})
    store.add_measurement(original)
    assert store.measurements("r") == [original]


def test_measurement_statuses_are_stored_as_their_text(tmp_path):
    store = Store(tmp_path / "bench.db")
    for status in MeasurementStatus:
        store.add_measurement(Measurement("r", "s", "a", "fp32", status, job_key=status.name))
    rows = sqlite3.connect(tmp_path / "bench.db").execute(
        "SELECT status, typeof(status) FROM measurements ORDER BY rowid").fetchall()
    assert rows == [(s.value, "text") for s in MeasurementStatus]
    assert [m.status for m in store.measurements("r")] == list(MeasurementStatus)


def test_run_lifecycle(tmp_path):
    store = Store(tmp_path / "bench.db")
    store.start_run("r2", "t0", "0.1", "h", {})
    assert store.run("r2")["status"] == "running"
    store.finish_run("r2", "t1", "failed", 123)
    run = store.run("r2")
    assert (run["status"], run["bytes_pushed"], run["finished_at"]) == ("failed", 123, "t1")
    assert store.run("missing") is None


def test_a_store_of_the_first_schema_opens_keeps_its_runs_and_takes_new_fields(tmp_path):
    # The schema as version 1 wrote it: no measurements.role, no artifacts.path.
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
          status TEXT NOT NULL, tool_version TEXT, host TEXT, config_json TEXT,
          bytes_pushed INTEGER DEFAULT 0);
        CREATE TABLE artifacts (sha256 TEXT PRIMARY KEY, name TEXT, model_name TEXT,
          variant TEXT, size_bytes INTEGER, metadata_json TEXT);
        CREATE TABLE measurements (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT,
          device_serial TEXT, adb_server TEXT, variant TEXT, status TEXT, kind TEXT,
          inference_avg_us REAL);
        INSERT INTO runs VALUES ('old-run', 't0', 't1', 'ok', '0.1', 'h', '{}', 0);
        INSERT INTO artifacts VALUES ('s' , 'm-baseline', 'm', 'baseline', 10, '{}');
        INSERT INTO measurements (run_id, device_serial, adb_server, variant, status, kind,
          inference_avg_us) VALUES ('old-run', 'dev', 'lab', 'baseline', 'ok', 'timing', 99.5);
    """)
    old.commit()
    old.close()
    store = Store(path)
    [m] = store.measurements("old-run")
    assert (m.inference_avg_us, m.role, m.inference_min_us) == (99.5, None, None)
    store.add_measurement(Measurement("new-run", "dev", "lab", "baseline", "ok", kind="confirm",
                                      role="cand", inference_min_us=90.0))
    assert store.measurements("new-run")[0].role == "cand"
    store.record_artifact("t", "m-wide", "m", "baseline", 20, {}, path="/x/m.tflite")
    assert store.artifacts(["t"])[0]["path"] == "/x/m.tflite"
    assert store.artifacts(["s"])[0]["path"] is None
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version.fetchone()[0] == str(SCHEMA_VERSION)


# -- issue 9: schema versions, foreign files, `latest`, owners, the journal ---------------------


def test_a_store_of_schema_2_gains_owners_and_device_ids(tmp_path):
    path = tmp_path / "v2.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '2');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
          status TEXT NOT NULL, tool_version TEXT, host TEXT, config_json TEXT,
          bytes_pushed INTEGER DEFAULT 0);
        CREATE TABLE devices (serial TEXT NOT NULL, adb_server TEXT NOT NULL, model TEXT,
          abi TEXT, sdk INTEGER, props_json TEXT, first_seen TEXT, last_seen TEXT,
          PRIMARY KEY (serial, adb_server));
        CREATE TABLE measurements (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT,
          device_serial TEXT, adb_server TEXT, variant TEXT, status TEXT, kind TEXT,
          job_key TEXT, inference_avg_us REAL);
        INSERT INTO runs VALUES ('old-run', 't0', NULL, 'running', '0.1', 'h', '{}', 0);
        INSERT INTO devices VALUES ('127.0.0.1:5555', 'lab', 'm', 'x86_64', 34, '{}', 't', 't');
        INSERT INTO measurements (run_id, device_serial, adb_server, variant, status, kind,
          job_key, inference_avg_us)
          VALUES ('old-run', '127.0.0.1:5555', 'lab', 'baseline', 'ok', 'timing', 'k', 9.5);
    """)
    old.commit()
    old.close()
    store = Store(path)
    [m] = store.measurements("old-run")
    assert (m.device_serial, m.device_id, m.inference_avg_us) == ("127.0.0.1:5555", None, 9.5)
    run = store.run("old-run")
    assert (run["owner_pid"], run["heartbeat_at"]) == (None, None)
    refuse_if_running(run)  # a run of a bench that recorded no owner can be resumed
    assert store.device_id_of("127.0.0.1:5555", "lab") is None
    store.record_device("127.0.0.1:5555", "lab", "m", "x86_64", 34, {}, "t2", "VIRT0001")
    assert store.device_id_of("127.0.0.1:5555", "lab") == "VIRT0001"
    assert store.done_job_keys("old-run") == {"k"}
    store.close()
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key='schema_version'")
    assert version.fetchone()[0] == str(SCHEMA_VERSION)


def test_a_store_of_a_newer_bench_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "newer.db"
    newer = sqlite3.connect(path)
    newer.executescript(f"""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION + 1}');
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, shape_of_the_future TEXT);
    """)
    newer.commit()
    newer.close()
    before = path.read_bytes()
    with pytest.raises(UserError, match=f"schema version {SCHEMA_VERSION + 1}.*newer bench"):
        Store(path)
    assert path.read_bytes() == before  # never restamped, never migrated


@pytest.mark.parametrize("content, words", [
    (b"run_id,latency\nr1,12.5\n" * 40, "not a SQLite file"),
    (None, "not a bench results store"),
])
def test_a_file_that_is_no_bench_store_is_refused_and_left_as_it_was(tmp_path, content, words):
    path = tmp_path / "results.db"
    if content is None:  # some other program's SQLite file
        other = sqlite3.connect(path)
        other.execute("CREATE TABLE photos (id INTEGER, name TEXT)")
        other.commit()
        other.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(UserError) as refused:
        Store(path)
    assert words in str(refused.value) and str(path) in str(refused.value)
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == before


def _finished_run(store, run_id, started_at, status, sample_status="ok"):
    store.start_run(run_id, started_at, "0.1", "h", {})
    store.add_measurement(Measurement(run_id, "dev", "lab", "baseline", sample_status))
    if status != RunStatus.RUNNING:
        store.finish_run(run_id, started_at, status, 0)


def test_latest_is_the_newest_run_that_finished_ok_with_ok_samples(tmp_path):
    from harness.regress.compare import resolve_run_ref

    store = Store(tmp_path / "bench.db")
    _finished_run(store, "r1-ok", "2026-01-01T00:00:00", RunStatus.OK)
    _finished_run(store, "r2-ok", "2026-01-02T00:00:00", RunStatus.OK)
    _finished_run(store, "r3-failed", "2026-01-03T00:00:00", RunStatus.FAILED, "failed")
    _finished_run(store, "r4-interrupted", "2026-01-04T00:00:00", RunStatus.INTERRUPTED)
    _finished_run(store, "r5-running", "2026-01-05T00:00:00", RunStatus.RUNNING)
    store.start_run("r6-empty", "2026-01-06T00:00:00", "0.1", "h", {})
    store.finish_run("r6-empty", "t", RunStatus.OK, 0)  # ok, but not one ok sample
    said = []
    assert resolve_run_ref(store, "latest", log=said.append) == "r2-ok"
    assert said == ["latest: run r2-ok (started 2026-01-02T00:00:00, finished "
                    "2026-01-02T00:00:00, ok)"]
    assert resolve_run_ref(store, "latest", exclude="r2-ok") == "r1-ok"
    store.finish_run("r2-ok", "t", RunStatus.FAILED, 0)
    with pytest.raises(UserError, match="no run in .* finished ok other than r1-ok"):
        resolve_run_ref(store, "latest", exclude="r1-ok")


def test_resume_is_refused_while_the_owner_lives_on_this_host(tmp_path):
    store = Store(tmp_path / "bench.db")
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        store.start_run("r", utc_now(), "0.1", socket.gethostname(), {}, owner_pid=owner.pid)
        with pytest.raises(UserError, match=f"--resume r: .*pid {owner.pid}"):
            store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)
    finally:
        owner.kill()
        owner.wait()
    # The owner is gone: its fresh heartbeat does not matter on its own host.
    before = store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)
    assert before["owner_pid"] == owner.pid
    run = store.run("r")
    assert (run["owner_pid"], run["status"]) == (os.getpid(), "running")
    # This process owns it now, but is not making it: it may take it again ...
    store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)
    with RunOwnership(store, "r", interval_s=0.05):  # ... except while it is making it
        with pytest.raises(UserError, match="still running"):
            store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)
        # Its heartbeat goes on: the first beat comes one interval after the start (waited
        # for, not assumed: on a busy machine the block could end before it).
        deadline = time.monotonic() + 10
        while store.run("r")["heartbeat_at"] <= run["heartbeat_at"] and time.monotonic() < deadline:
            time.sleep(0.02)
    assert store.run("r")["heartbeat_at"] > run["heartbeat_at"]


def test_resume_from_another_host_waits_for_the_lease(tmp_path):
    from datetime import datetime, timedelta, timezone

    store = Store(tmp_path / "bench.db")
    store.start_run("r", utc_now(), "0.1", "some-other-host", {}, owner_pid=1)
    with pytest.raises(UserError, match="pid 1 on some-other-host, heartbeat"):
        store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)
    stale = datetime.now(timezone.utc) - timedelta(seconds=LEASE_S + 1)
    store.heartbeat("r", stale.isoformat(timespec="milliseconds"))
    store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)
    assert store.run("r")["host"] == socket.gethostname()


def test_journal_keeps_whole_lines_and_ingest_stores_each_sample_once(tmp_path):
    from harness.benchmark.parser import OpProfileRow

    store = Store(tmp_path / "bench.db")
    store.start_run("r", utc_now(), "0.1", "h", {})
    journal = Journal(journal_path(store.path))
    assert journal.path == tmp_path / "bench.db.journal"
    a = Measurement("r", "dev", "lab", "baseline", "ok", kind="op_profile", job_key="a",
                    started_at="t1", inference_avg_us=5.0, output_tail="x\ny")
    b = Measurement("r", "dev", "lab", "baseline", "ok", job_key="b", started_at="t2")
    other = Measurement("other-run", "dev", "lab", "baseline", "ok", job_key="c", started_at="t3")
    op = OpProfileRow("CONV_2D", 0.1, 0.2, 50.0, 50.0, 0.0, 1, "conv")
    journal.append(a, [op])
    journal.append(b)
    journal.append(b)  # journaled twice (a resume that failed midway): stored once
    journal.append(other)
    with open(journal.path, "a") as f:
        f.write('{"measurement": {"run_id": "r", "devi')  # torn by a crash mid-append
    late = Measurement("r", "dev", "lab", "baseline", "ok", job_key="d", started_at="t4")
    journal.append(late)  # a later sample is not glued to the torn line
    assert [e.measurement for e in journal.entries("r")] == [a, b, b, late]
    assert store.ingest_journal("r") == 3
    assert store.measurements("r") == [a, b, late]
    stored_a = store._conn.execute("SELECT id FROM measurements ORDER BY id").fetchone()
    assert [o["name"] for o in store.op_profile(stored_a[0])] == ["conv"]
    assert [e.measurement for e in journal.entries()] == [other]  # other runs' samples stay
    assert store.ingest_journal("r") == 0
    assert store.ingest_journal("other-run") == 1 and not journal.path.exists()


def test_a_store_on_a_full_disk_journals_the_sample(tmp_path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        store = Store(disk / "bench.db")
        store.start_run("r", utc_now(), "0.1", "h", {})
        store.journal.reserve()
        first = Measurement("r", "dev", "lab", "baseline", "ok", job_key="1", started_at="t1")
        store.add_measurement(first)
        filler = fill(disk)
        lost = Measurement("r", "dev", "lab", "baseline", "ok", job_key="2", started_at="t2",
                           output_tail="z" * 3000)
        with pytest.raises(StorageError) as caught:
            store.add_measurement(lost)
        message = str(caught.value)
        assert "database or disk is full" in message and str(disk / "bench.db.journal") in message
        assert f"bench run --resume r --store {disk / 'bench.db'}" in message
        assert "\n" not in message
        assert [e.measurement for e in store.journal.entries("r")] == [lost]
        filler.unlink()
        assert store.ingest_journal("r") == 1
        assert store.measurements("r") == [first, lost]
        store.close()


def test_an_owner_in_another_pid_namespace_is_judged_by_its_heartbeat(tmp_path):
    store = Store(tmp_path / "bench.db")
    # Same host name, another pid namespace (a container): its pid 1 says nothing here.
    store.start_run("r", utc_now(), "0.1", socket.gethostname(), {}, owner_pid=1,
                    owner_pidns="pid:[1]")
    with pytest.raises(UserError, match="heartbeat"):
        store.claim_run("r", socket.gethostname(), os.getpid(), utc_now(), refuse_if_running)


def test_releasing_one_runs_reserve_keeps_another_runs_journal(tmp_path):
    first, second = Store(tmp_path / "bench.db"), Store(tmp_path / "bench.db")
    first.journal.reserve()
    second.journal.reserve()
    second.journal.release()  # the first run still counts on the room
    assert first.journal.path.exists()
    m = Measurement("r", "dev", "lab", "baseline", "ok", job_key="a", started_at="t1")
    first.journal.append(m)
    first.journal.release()  # it holds a sample: kept for --resume
    assert [e.measurement for e in first.journal.entries()] == [m]
    first.journal.drop(first.journal.entries())
    third = Store(tmp_path / "bench.db")
    third.journal.reserve()
    third.journal.release()  # empty, and nobody else holds a reserve: gone
    assert not third.journal.path.exists()
