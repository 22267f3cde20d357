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
