import sqlite3

from harness.results import MEASUREMENT_FIELDS, Measurement
from harness.store import Store


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
    assert version.fetchone()[0] == "2"
