"""SQLite results store (default `reports/bench.db`).

Each measurement is committed on its own before the next one starts, so a killed `bench` loses
nothing it finished. Columns of `measurements` come from `harness.results.Measurement`.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import fields
from pathlib import Path

from harness.results import MEASUREMENT_FIELDS, Measurement

SCHEMA_VERSION = 2
# Columns added since version 1, added to older stores when they are opened.
ADDED_COLUMNS = {"artifacts": {"path": "TEXT"}}

_SQL_TYPES = {int: "INTEGER", float: "REAL", str: "TEXT"}


def _column_type(annotation: str) -> str:
    for py, sql in (("int", "INTEGER"), ("float", "REAL")):
        if annotation.startswith(py):
            return sql
    return "TEXT"


def _measurement_column_types() -> dict[str, str]:
    return {f.name: _column_type(str(f.type)) for f in fields(Measurement)}


def _measurement_columns() -> str:
    return ",\n  ".join(f"{name} {sql}" for name, sql in _measurement_column_types().items())


SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY,
  started_at TEXT NOT NULL,
  finished_at TEXT,
  status TEXT NOT NULL,
  tool_version TEXT,
  host TEXT,
  config_json TEXT,
  bytes_pushed INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS devices (
  serial TEXT NOT NULL,
  adb_server TEXT NOT NULL,
  model TEXT, abi TEXT, sdk INTEGER,
  props_json TEXT,
  first_seen TEXT, last_seen TEXT,
  PRIMARY KEY (serial, adb_server)
);
CREATE TABLE IF NOT EXISTS artifacts (
  sha256 TEXT PRIMARY KEY,
  name TEXT, model_name TEXT, variant TEXT,
  size_bytes INTEGER,
  metadata_json TEXT,
  path TEXT
);
CREATE TABLE IF NOT EXISTS measurements (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  {_measurement_columns()}
);
CREATE INDEX IF NOT EXISTS measurements_run ON measurements(run_id);
CREATE TABLE IF NOT EXISTS tags (
  tag TEXT PRIMARY KEY,
  run_id TEXT NOT NULL,
  tagged_at TEXT
);
CREATE TABLE IF NOT EXISTS op_profiles (
  measurement_id INTEGER NOT NULL REFERENCES measurements(id),
  node_type TEXT, name TEXT,
  first_ms REAL, avg_ms REAL, percent REAL, cdf_percent REAL, mem_kb REAL, times_called INTEGER
);
"""


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the device threads; the lock serialises writes.
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock, self._conn:
            self._conn.executescript(SCHEMA)
            self._migrate()
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                               (str(SCHEMA_VERSION),))

    def _migrate(self) -> None:
        """Bring an older store up to this schema: add the columns it lacks (new Measurement
        fields included), so its runs stay readable and new ones can be added."""
        wanted = {"measurements": _measurement_column_types(), **ADDED_COLUMNS}
        for table, columns in wanted.items():
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for name, sql_type in columns.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}")

    def close(self) -> None:
        self._conn.close()

    # -- writes (each commits) ---------------------------------------------------------------
    def start_run(self, run_id: str, started_at: str, tool_version: str, host: str,
                  config: dict) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO runs (run_id, started_at, status, tool_version, host, config_json)"
                " VALUES (?, ?, 'running', ?, ?, ?)",
                (run_id, started_at, tool_version, host, json.dumps(config, default=str)))

    def finish_run(self, run_id: str, finished_at: str, status: str, bytes_pushed: int) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "UPDATE runs SET finished_at=?, status=?, bytes_pushed=? WHERE run_id=?",
                (finished_at, status, bytes_pushed, run_id))

    def record_device(self, serial: str, adb_server: str, model: str | None, abi: str | None,
                      sdk: int | None, props: dict, seen_at: str) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(serial, adb_server) DO UPDATE SET model=excluded.model,"
                " abi=excluded.abi, sdk=excluded.sdk, props_json=excluded.props_json,"
                " last_seen=excluded.last_seen",
                (serial, adb_server, model, abi, sdk, json.dumps(props, sort_keys=True),
                 seen_at, seen_at))

    def record_artifact(self, sha256: str, name: str, model_name: str, variant: str,
                        size_bytes: int, metadata: dict, path: str | None = None) -> None:
        """`path`: where the .tflite lies on this host (for `bench compare --confirm`)."""
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO artifacts (sha256, name, model_name, variant, size_bytes,"
                " metadata_json, path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sha256, name, model_name, variant, size_bytes,
                 json.dumps(metadata, sort_keys=True, default=str), path))

    def add_measurement(self, m: Measurement, ops: list | None = None) -> int:
        """One sample (and its op profile rows), committed together before returning."""
        values = [getattr(m, name) for name in MEASUREMENT_FIELDS]
        with self._lock, self._conn:
            cur = self._conn.execute(
                f"INSERT INTO measurements ({', '.join(MEASUREMENT_FIELDS)})"
                f" VALUES ({', '.join('?' for _ in values)})", values)
            for op in ops or []:
                self._conn.execute(
                    "INSERT INTO op_profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cur.lastrowid, op.node_type, op.name, op.first_ms, op.avg_ms, op.percent,
                     op.cdf_percent, op.mem_kb, op.times_called))
            return cur.lastrowid

    def done_job_keys(self, run_id: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT job_key FROM measurements WHERE run_id=? AND job_key IS NOT NULL"
            " AND status != 'retried'", (run_id,))
        return {r[0] for r in rows}

    def op_profile(self, measurement_id: int) -> list[dict]:
        rows = self._conn.execute("SELECT * FROM op_profiles WHERE measurement_id=?",
                                  (measurement_id,))
        return [dict(r) for r in rows]

    # -- reads -------------------------------------------------------------------------------
    def run(self, run_id: str) -> dict | None:
        row = self._conn.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return dict(row) if row else None

    def runs(self) -> list[dict]:
        return [dict(r) for r in self._conn.execute("SELECT * FROM runs ORDER BY started_at")]

    def artifacts(self, sha256s: list[str]) -> list[dict]:
        rows = [self._conn.execute("SELECT * FROM artifacts WHERE sha256=?", (sha,)).fetchone()
                for sha in sha256s]
        return [dict(r) | {"metadata": json.loads(r["metadata_json"] or "{}")} for r in rows if r]

    def measurements(self, run_id: str) -> list[Measurement]:
        rows = self._conn.execute(
            "SELECT * FROM measurements WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        return [Measurement(**{k: row[k] for k in MEASUREMENT_FIELDS}) for row in rows]

    # -- tags (`bench tag RUN_ID NAME`, `bench compare tag:NAME ...`) --------------------------
    def tag_run(self, run_id: str, tag: str) -> None:
        """Name a run; a tag names one run, so tagging again moves it."""
        from harness.results import utc_now

        with self._lock, self._conn:
            self._conn.execute("INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
                               (tag, run_id, utc_now()))

    def run_for_tag(self, tag: str) -> str | None:
        row = self._conn.execute("SELECT run_id FROM tags WHERE tag=?", (tag,)).fetchone()
        return row[0] if row else None

    def tags_by_run(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for row in self._conn.execute("SELECT tag, run_id FROM tags ORDER BY tag"):
            out.setdefault(row["run_id"], []).append(row["tag"])
        return out

    def latest_run_id(self, exclude: str | None = None) -> str | None:
        """The most recently started run, other than `exclude` (e.g. the run being made now)."""
        row = self._conn.execute(
            "SELECT run_id FROM runs WHERE run_id IS NOT ? ORDER BY started_at DESC, rowid DESC"
            " LIMIT 1", (exclude,)).fetchone()
        return row[0] if row else None
