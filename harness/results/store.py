"""SQLite results store (default `reports/bench.db`).

Each measurement is committed on its own before the next one starts, so a killed `bench` loses
nothing it finished; a sample the store cannot take (disk full, read-only, I/O error) goes to
the journal beside it (harness.results.journal) and the run stops, to be finished by `--resume`.
Columns of `measurements` come from `harness.results.Measurement`.

A store written by a newer bench (higher schema version) is refused, never migrated down or
restamped; an older one is brought up to this schema when opened.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import fields
from pathlib import Path
from typing import Callable

from harness.errors import BenchError, StorageError, UserError
from harness.results.journal import Journal, journal_path, op_row
from harness.results.schema import MEASUREMENT_FIELDS, Measurement, RunStatus

SCHEMA_VERSION = 3
# Columns added since version 1, added to older stores when they are opened.
ADDED_COLUMNS = {
    "artifacts": {"path": "TEXT"},                                   # version 2
    "runs": {"owner_pid": "INTEGER", "heartbeat_at": "TEXT",         # version 3
             "owner_pidns": "TEXT", "adb_json": "TEXT"},
    "devices": {"device_id": "TEXT"},                                # version 3
}

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
  bytes_pushed INTEGER DEFAULT 0,
  owner_pid INTEGER,
  heartbeat_at TEXT,
  owner_pidns TEXT,
  adb_json TEXT
);
CREATE TABLE IF NOT EXISTS devices (
  serial TEXT NOT NULL,
  adb_server TEXT NOT NULL,
  model TEXT, abi TEXT, sdk INTEGER,
  props_json TEXT,
  first_seen TEXT, last_seen TEXT,
  device_id TEXT,
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
        self.journal = Journal(journal_path(self.path), holders_path=self.path)
        if self.path.is_dir():
            raise UserError(f"store {self.path}: is a directory; give --store a file path "
                            "such as reports/bench.db")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by the device threads; the lock serialises writes.
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"store {self.path}: cannot open it ({_reason(exc)}); give --store "
                            "a path in a writable directory") from None
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            if getattr(exc, "sqlite_errorname", "") == "SQLITE_NOTADB":
                raise UserError(f"store {self.path}: not a SQLite file ({exc}); give --store a "
                                "bench results store or a new file name") from None
            raise StorageError(f"store {self.path}: cannot open it ({exc}); free space or fix "
                               "its permissions, then run again") from None
        except BenchError:
            self._conn.close()
            raise

    def _open(self) -> None:
        version = self._schema_version()
        if version is not None and version > SCHEMA_VERSION:
            raise UserError(f"store {self.path}: schema version {version} was written by a newer "
                            f"bench (this one knows up to {SCHEMA_VERSION}); use that bench, or "
                            "give --store another file")
        with self._lock, self._conn:
            self._conn.executescript(SCHEMA)
            self._migrate()
            if version != SCHEMA_VERSION:
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                                   (str(SCHEMA_VERSION),))

    def _schema_version(self) -> int | None:
        """The version stamped in the store; None for a new (empty) file. A SQLite file with
        tables but no stamp is some other program's: refused rather than written into."""
        tables = {r[0] for r in self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")}  # SQLITE_NOTADB surfaces here
        if "meta" not in tables:
            if tables - {"sqlite_sequence"}:
                raise UserError(f"store {self.path}: a SQLite file, but not a bench results "
                                "store (no schema version); give --store another file")
            return None
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        try:
            return int(row[0]) if row else None
        except ValueError:
            raise UserError(f"store {self.path}: schema version {row[0]!r} is not a number; "
                            "give --store another file") from None

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

    def _write(self, what: str, sql: str, params: tuple = ()) -> None:
        """One statement, committed; a store that cannot take it (disk full, read-only, I/O
        error) is a StorageError naming the store."""
        try:
            with self._lock, self._conn:
                self._conn.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"store {self.path}: could not record {what} ({exc}); free space "
                               "or fix its permissions, then run again") from None

    # -- runs and their owners (harness.run_owner) --------------------------------------------
    def start_run(self, run_id: str, started_at: str, tool_version: str, host: str,
                  config: dict, owner_pid: int | None = None, adb: dict | None = None,
                  owner_pidns: str | None = None) -> None:
        self._write(f"run {run_id}",
                    "INSERT INTO runs (run_id, started_at, status, tool_version, host, config_json,"
                    " owner_pid, heartbeat_at, adb_json, owner_pidns)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, started_at, RunStatus.RUNNING.value, tool_version, host,
                     json.dumps(config, default=str), owner_pid, started_at,
                     json.dumps(adb) if adb is not None else None, owner_pidns))

    def finish_run(self, run_id: str, finished_at: str, status: str, bytes_pushed: int) -> None:
        self._write(f"the end of run {run_id}",
                    "UPDATE runs SET finished_at=?, status=?, bytes_pushed=? WHERE run_id=?",
                    (finished_at, _plain(status), bytes_pushed, run_id))

    def stop_run(self, run_id: str, stopped_at: str, status: str) -> None:
        """A run that stopped before its end (e.g. RunStatus.INTERRUPTED)."""
        self._write(f"the stop of run {run_id}",
                    "UPDATE runs SET finished_at=?, status=? WHERE run_id=?",
                    (stopped_at, _plain(status), run_id))

    def heartbeat(self, run_id: str, at: str) -> None:
        """The owner is still at work on the run (see harness.run_owner)."""
        self._write(f"a heartbeat of run {run_id}",
                    "UPDATE runs SET heartbeat_at=? WHERE run_id=?", (at, run_id))

    def claim_run(self, run_id: str, host: str, pid: int, at: str,
                  check: Callable[[dict], None], pidns: str | None = None) -> dict:
        """Make this process the run's owner (for `--resume`), in one transaction that no other
        process can interleave with: `check(run)` raises to refuse. Returns the run as it was."""
        try:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute("SELECT * FROM runs WHERE run_id=?",
                                             (run_id,)).fetchone()
                    if row is None:
                        raise UserError(f"--resume {run_id}: no such run in {self.path}")
                    check(dict(row))
                    self._conn.execute(
                        "UPDATE runs SET status=?, finished_at=NULL, host=?, owner_pid=?,"
                        " heartbeat_at=?, owner_pidns=? WHERE run_id=?",
                        (RunStatus.RUNNING.value, host, pid, at, pidns, run_id))
                except BaseException:
                    self._conn.rollback()
                    raise
                self._conn.commit()
                return dict(row)
        except sqlite3.DatabaseError as exc:
            raise StorageError(f"store {self.path}: could not take over run {run_id} ({exc}); "
                               "free space or fix its permissions, then resume again") from None

    def record_device(self, serial: str, adb_server: str, model: str | None, abi: str | None,
                      sdk: int | None, props: dict, seen_at: str,
                      device_id: str | None = None) -> None:
        self._write(f"device {serial}",
                    "INSERT INTO devices (serial, adb_server, model, abi, sdk, props_json,"
                    " first_seen, last_seen, device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT(serial, adb_server) DO UPDATE SET model=excluded.model,"
                    " abi=excluded.abi, sdk=excluded.sdk, props_json=excluded.props_json,"
                    " last_seen=excluded.last_seen, device_id=excluded.device_id",
                    (serial, adb_server, model, abi, sdk, json.dumps(props, sort_keys=True),
                     seen_at, seen_at, device_id))

    def record_artifact(self, sha256: str, name: str, model_name: str, variant: str,
                        size_bytes: int, metadata: dict, path: str | None = None) -> None:
        """`path`: where the .tflite lies on this host (for `bench compare --confirm`)."""
        self._write(f"artifact {name}",
                    "INSERT OR REPLACE INTO artifacts (sha256, name, model_name, variant,"
                    " size_bytes, metadata_json, path) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (sha256, name, model_name, variant, size_bytes,
                     json.dumps(metadata, sort_keys=True, default=str), path))

    # -- samples -------------------------------------------------------------------------------
    def add_measurement(self, m: Measurement, ops: list | None = None) -> int:
        """One sample (and its op profile rows), committed together before returning.

        A store that cannot take it: the sample goes to the journal (fsync'd) and a
        StorageError says where, so the run stops with nothing it measured lost."""
        values = [_plain(getattr(m, name)) for name in MEASUREMENT_FIELDS]
        try:
            with self._lock, self._conn:
                cur = self._conn.execute(
                    f"INSERT INTO measurements ({', '.join(MEASUREMENT_FIELDS)})"
                    f" VALUES ({', '.join('?' for _ in values)})", values)
                for op in ops or []:
                    self._conn.execute(
                        "INSERT INTO op_profiles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (cur.lastrowid, op.node_type, op.name, op.first_ms, op.avg_ms,
                         op.percent, op.cdf_percent, op.mem_kb, op.times_called))
                return cur.lastrowid
        except sqlite3.DatabaseError as exc:
            self._journal_or_raise(m, ops, exc)
            raise StorageError(
                f"store {self.path}: {exc}; the finished sample is kept in {self.journal.path}; "
                f"free space, then finish the run with `bench run --resume {m.run_id} --store "
                f"{self.path}`") from None

    def _journal_or_raise(self, m: Measurement, ops: list | None, exc: Exception) -> None:
        try:
            self.journal.append(m, ops)
        except OSError as journal_exc:
            raise StorageError(
                f"store {self.path}: {exc}, and the journal {self.journal.path} could not take "
                f"the sample either ({journal_exc.strerror or journal_exc}); free space, then "
                f"`bench run --resume {m.run_id} --store {self.path}` measures it again") from None

    def ingest_journal(self, run_id: str) -> int:
        """Store the run's journaled samples (those not stored yet) and drop them from the
        journal; returns how many were stored. Safe to repeat after a failure midway."""
        entries = self.journal.entries(run_id)
        if not entries:
            return 0
        stored = {(m.run_id, m.job_key, m.attempt, m.started_at, m.device_serial)
                  for m in self.measurements(run_id)}
        added = 0
        for entry in entries:
            if entry.identity() not in stored:
                self.add_measurement(entry.measurement, [op_row(op) for op in entry.ops])
                stored.add(entry.identity())
                added += 1
        try:
            self.journal.drop(entries)
        except OSError as exc:
            # Every entry is in the store now; a later ingest skips them again.
            raise StorageError(f"journal {self.journal.path}: stored its samples of run {run_id}"
                               f" but could not rewrite it ({exc.strerror or exc}); free space "
                               "and resume again") from None
        return added

    def done_job_keys(self, run_id: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT job_key FROM measurements WHERE run_id=? AND job_key IS NOT NULL"
            " AND status NOT IN ('retried', 'lost')", (run_id,))
        return {r[0] for r in rows}

    def device_id_of(self, serial: str, adb_server: str) -> str | None:
        """The stable identity last recorded for a device under this adb serial and server."""
        row = self._conn.execute("SELECT device_id FROM devices WHERE serial=? AND adb_server=?",
                                 (serial, adb_server)).fetchone()
        return row[0] if row else None

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
        from harness.results.schema import utc_now

        self._write(f"tag {tag}", "INSERT OR REPLACE INTO tags VALUES (?, ?, ?)",
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
        """The most recently started run that finished ok with ok samples, other than `exclude`
        (e.g. the run being made now): never a running, interrupted or failed one."""
        row = self._conn.execute(
            "SELECT run_id FROM runs WHERE run_id IS NOT ? AND status=? AND EXISTS"
            " (SELECT 1 FROM measurements m WHERE m.run_id=runs.run_id AND m.status='ok')"
            " ORDER BY started_at DESC, rowid DESC LIMIT 1",
            (exclude, RunStatus.OK.value)).fetchone()
        return row[0] if row else None

    def run_counts_by_status(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT status, count(*) FROM runs GROUP BY status")
        return {r[0]: r[1] for r in rows}


def _plain(value):
    """Enum members (RunStatus, ...) are stored as their plain values."""
    return getattr(value, "value", value)


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)
