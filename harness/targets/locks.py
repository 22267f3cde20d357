"""One job at a time per device: the host's fast path, and who holds a lock.

`DeviceLock` is an `flock` on a file under `<state_dir>/locks/`, one file per (server, serial):
bench processes of one host and state dir queue on it without asking the device. The kernel
drops it when its holder exits, however it exits, so a killed `bench` never leaves a phone
locked. The holder writes its pid (and who it is) into the file so a second bench can say who
has it. The files are never deleted: unlinking a lock file races with a process about to lock
it. What excludes every other bench that can reach the device (other state dirs, users, hosts)
is the lock kept on the device itself, `harness.targets.device_lock`.
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.targets.base import Cancelled
from harness.errors import DeviceError
from harness.paths import state_dir

POLL_INTERVAL_S = 0.05


class DeviceBusy(DeviceError):
    """Another bench process holds the device."""

    def __init__(self, message: str, holder_pid: int | None):
        super().__init__(message)
        self.holder_pid = holder_pid


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: enough for a person to find the process, and for this host to tell
    whether the holder still lives."""

    user: str
    host: str
    pid: int
    run_id: str
    pid_namespace: str = ""  # a pid names a process only within its own namespace

    @classmethod
    def this_process(cls, run_id: str) -> "LockOwner":
        return cls(_user(), socket.gethostname(), os.getpid(), run_id, pid_namespace())

    def describe(self) -> str:
        return f"{self.user}@{self.host} pid {self.pid}, run {self.run_id}"

    def on_this_host(self) -> bool:
        return self.host == socket.gethostname() and self.pid_namespace == pid_namespace()


def pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    try:  # a killed but not yet reaped process (a zombie) holds nothing any more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers) and no USER variable
        return f"uid{os.getuid()}"


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
    holds it. wait=True: poll until free; after `timeout_s` (None: no limit) DeviceBusy too,
    and Cancelled once `stop` is set. `owner` is written beside the pid for the busy message.
    """

    def __init__(self, serial: str, server_name: str, wait: bool = True,
                 timeout_s: float | None = None, directory: Path | None = None,
                 owner: LockOwner | None = None, stop: threading.Event | None = None):
        self.serial = serial
        self.server_name = server_name
        self.wait = wait
        self.timeout_s = timeout_s
        self.path = (directory or lock_dir()) / lock_file_name(server_name, serial)
        self.owner = owner
        self.stop = stop
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
                    if self.stop is not None and self.stop.is_set():
                        raise Cancelled(f"{self.serial}: stopped waiting for its lock") from None
                    time.sleep(POLL_INTERVAL_S)
            os.ftruncate(fd, 0)
            who = f"{self.owner.describe()}\n" if self.owner else ""
            os.pwrite(fd, f"{os.getpid()}\n{who}".encode(), 0)
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
        first = self._holder_lines()[:1]
        return int(first[0]) if first and first[0].isdigit() else None

    def _holder_lines(self) -> list[str]:
        try:
            return self.path.read_text().strip().splitlines()
        except OSError:
            return []

    def _busy(self) -> DeviceBusy:
        pid, lines = self.holder_pid(), self._holder_lines()
        holder = ("another bench process" if pid is None else
                  lines[1] if len(lines) > 1 else f"bench process {pid}")
        waited = f" after waiting {self.timeout_s:g} s" if self.wait else ""
        return DeviceBusy(f"device {self.serial} (server {self.server_name}) is busy: held by "
                          f"{holder}{waited} (lock {self.path})", pid)

    def __enter__(self) -> "DeviceLock":
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()
