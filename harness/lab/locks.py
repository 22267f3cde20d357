"""One job at a time per device, across every `bench` process on the host.

A lock is an `flock` on a file under `<state_dir>/locks/`, one file per (server, serial). The
kernel drops it when its holder exits, however it exits, so a killed `bench` never leaves a
phone locked. The holder writes its pid into the file so a second bench can say who has it.
The files are never deleted: unlinking a lock file races with a process about to lock it.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import re
import time
from pathlib import Path

from harness.errors import DeviceError
from harness.paths import state_dir

POLL_INTERVAL_S = 0.05


class DeviceBusy(DeviceError):
    """Another bench process holds the device."""

    def __init__(self, message: str, holder_pid: int | None):
        super().__init__(message)
        self.holder_pid = holder_pid


def lock_dir() -> Path:
    return state_dir() / "locks"


def lock_file_name(server_name: str, serial: str) -> str:
    """A file name any serial can have (serials hold `:`, `/`, `.`...): readable part + hash,
    the hash keeping `a:b` and `a_b` apart."""
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", f"{server_name}--{serial}")[:80]
    digest = hashlib.sha256(f"{server_name}\0{serial}".encode()).hexdigest()[:12]
    return f"{readable}-{digest}.lock"


class DeviceLock:
    """`with DeviceLock(serial, server_name, wait=True, timeout_s=None):` holds the device.

    wait=False: DeviceBusy at once when another process (or another DeviceLock in this one)
    holds it. wait=True: poll until free; after `timeout_s` (None: no limit) DeviceBusy too.
    """

    def __init__(self, serial: str, server_name: str, wait: bool = True,
                 timeout_s: float | None = None, directory: Path | None = None):
        self.serial = serial
        self.server_name = server_name
        self.wait = wait
        self.timeout_s = timeout_s
        self.path = (directory or lock_dir()) / lock_file_name(server_name, serial)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "DeviceLock":
        if self._fd is not None:
            raise RuntimeError(f"lock on {self.serial} already held by this DeviceLock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not self.wait or (deadline is not None and time.monotonic() >= deadline):
                        raise self._busy() from None
                    time.sleep(POLL_INTERVAL_S)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # no stale pid for the next reader
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def holder_pid(self) -> int | None:
        """The pid written by whoever holds (or last held) the lock, if readable."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def _busy(self) -> DeviceBusy:
        pid = self.holder_pid()
        holder = f"bench process {pid}" if pid else "another bench process"
        waited = f" after waiting {self.timeout_s:g} s" if self.wait else ""
        return DeviceBusy(f"device {self.serial} (server {self.server_name}) is busy: held by "
                          f"{holder}{waited} (lock {self.path})", pid)

    def __enter__(self) -> "DeviceLock":
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()
