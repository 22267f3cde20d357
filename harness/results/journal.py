"""The store's journal: finished samples the SQLite store could not take (disk full, read-only
file system, I/O error), kept beside it in `<store>.journal` until `bench run --resume` stores
them.

One JSON line per sample, appended and fsync'd before the run stops, so a sample that was
measured is never lost. A run reserves room for the journal when it starts (fallocate beyond the
end of the file, which keeps its size): a disk that fills up mid-run still takes the samples in
flight. Lines are written whole under an exclusive lock; a torn last line (a crash while
appending) is skipped when reading.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from harness.results.schema import MEASUREMENT_FIELDS, Measurement

JOURNAL_SUFFIX = ".journal"
# Room for the samples in flight when the disk fills (one per device, op profiles included).
RESERVE_BYTES = 1 << 20
_FALLOC_FL_KEEP_SIZE = 1


def journal_path(store_path: Path) -> Path:
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + JOURNAL_SUFFIX)


@dataclass
class JournalEntry:
    measurement: Measurement
    ops: list[dict]

    def identity(self) -> tuple:
        """What tells a journaled sample from every other sample of its run."""
        m = self.measurement
        return (m.run_id, m.job_key, m.attempt, m.started_at, m.device_serial)


class Journal:
    """`holders_path` (the store file) carries a shared flock per run that reserved room: the
    journal file, and the room in it, stays while any run on the store may still need it."""

    def __init__(self, path: Path, holders_path: Path | None = None):
        self.path = Path(path)
        self.holders_path = Path(holders_path) if holders_path else None
        self._holder_fd: int | None = None

    def reserve(self, nbytes: int = RESERVE_BYTES) -> bool:
        """Allocate `nbytes` for the journal without changing its size; False where the
        platform or file system cannot (the journal is then written without a reserve)."""
        self._hold()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError:
            return False
        try:
            return _fallocate_keep_size(fd, os.fstat(fd).st_size, nbytes)
        finally:
            os.close(fd)

    def _hold(self) -> None:
        if self._holder_fd is not None or self.holders_path is None:
            return
        try:
            fd = os.open(self.holders_path, os.O_RDONLY)
        except OSError:
            return
        fcntl.flock(fd, fcntl.LOCK_SH)  # flock, not SQLite's fcntl locks: the two never meet
        self._holder_fd = fd

    def append(self, m: Measurement, ops: list | None = None) -> None:
        """Add one sample, durably (fsync'd) before returning; raises OSError if it cannot."""
        line = json.dumps({"measurement": m.to_dict(), "ops": [_op_dict(op) for op in ops or []]},
                          default=str) + "\n"
        created = not self.path.exists()
        fd = self._open_locked()
        try:
            data = line.encode()
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # after a line torn by a crash: ours stays whole
            while data:
                written = os.write(fd, data)
                data = data[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)

    def _open_locked(self) -> int:
        """The journal open for appending, under its lock. A `drop` in another process may
        have replaced the file while we waited for the lock: then the new file is the one."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def entries(self, run_id: str | None = None) -> list[JournalEntry]:
        """The whole lines of the journal (of `run_id` only, when given), oldest first."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.split("\n"):
            try:
                record = json.loads(line)
                values = record["measurement"]
                m = Measurement(**{k: values.get(k) for k in MEASUREMENT_FIELDS
                                   if k in values})
            except (ValueError, KeyError, TypeError):
                continue  # empty, or torn by a crash mid-append: the sample was never whole
            if run_id is None or m.run_id == run_id:
                out.append(JournalEntry(m, list(record.get("ops") or [])))
        return out

    def drop(self, stored: list[JournalEntry]) -> None:
        """Remove the entries now in the store; the file goes once it holds none."""
        if not self.path.exists():
            return
        gone = {e.identity() for e in stored}
        fd = self._open_locked()  # no other process appends while we rewrite
        try:
            keep = [e for e in self.entries() if e.identity() not in gone]
            if not keep:
                self.path.unlink()
                return
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for e in keep:
                    f.write(json.dumps({"measurement": e.measurement.to_dict(), "ops": e.ops},
                                       default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
        finally:
            os.close(fd)

    def release(self) -> None:
        """Give back the reserved room: remove the journal if it holds no sample and no other
        run on the store holds a reserve in it. Decided under the journal's lock, so a sample
        another run is appending is never removed with it."""
        holder, self._holder_fd = self._holder_fd, None
        try:
            if holder is not None:
                try:
                    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours is the only hold
                except BlockingIOError:
                    return  # another run still counts on the room
            if not self.path.exists():
                return
            fd = self._open_locked()
            try:
                if os.fstat(fd).st_size == 0:
                    self.path.unlink()
            finally:
                os.close(fd)
        except OSError:
            pass
        finally:
            if holder is not None:
                os.close(holder)


def op_row(values: dict):
    """An op profile row from its journaled form, as the store takes it."""
    from harness.benchmark.parser import OpProfileRow

    return OpProfileRow(**{k: values.get(k) for k in (
        "node_type", "first_ms", "avg_ms", "percent", "cdf_percent", "mem_kb", "times_called",
        "name")})


def _op_dict(op) -> dict:
    return op.to_dict() if hasattr(op, "to_dict") else dict(op)


def _fsync_dir(path: Path) -> None:
    """A new file's directory entry is durable only once its directory is synced."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fallocate_keep_size(fd: int, offset: int, nbytes: int) -> bool:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return False  # not Linux: no reserve
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    return fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, nbytes) == 0
