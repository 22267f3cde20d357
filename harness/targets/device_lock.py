"""The lock kept on the device itself, honoured by every bench process that can reach it.

A lock under a host's state dir binds only the bench processes that share that dir. This one
lives on the device, so it also excludes a bench with another BENCH_STATE_DIR, another user, or
another host sharing the device's adb server.

The lock is the directory LOCK_DIR: `mkdir` is atomic, so one process creates it. Its `owner`
file names the holder (user, host, pid, run id, a random token) and when the lease ends, in the
device's own clock (`date +%s`); a thread renews the lease while the lock is held, and release
removes the directory. A lock is taken over only when it is stale: its lease ran out (its holder
died or lost the device for a whole lease), or its holder is a process of this host that is
gone. Takers queue on a second directory (`.takeover`), check that the same stale owner is still
there, then remove it and create their own, so two takers never both win.

Every command uses only mkdir, echo, cat, grep, mv, rm, stat and date: toybox has them all.
"""
from __future__ import annotations

import os
import re
import secrets
import shlex
import threading
import time
from dataclasses import dataclass
from typing import Callable

from harness.targets.base import Cancelled, Shell
from harness.errors import DeviceError
from harness.targets.locks import DeviceBusy, LockOwner, pid_alive

LOCK_DIR = "/data/local/tmp/.bench-lock"
LEASE_S = 60
POLL_INTERVAL_S = 0.5
# A `.takeover` directory this old belongs to a taker that died between its few commands.
TAKEOVER_STALE_S = 30
_SAFE_VALUE = re.compile(r"[^A-Za-z0-9._:@+\[\]-]")

# Tokens of the device locks this process holds now: a lock naming this pid but none of these
# was left behind by an earlier run of this process (its release could not reach the device).
_held_tokens: set[str] = set()
_held_guard = threading.Lock()


@dataclass(frozen=True)
class Lease:
    """What the owner file says."""

    owner: LockOwner
    token: str
    expires_at: int  # device epoch seconds

    def line(self) -> str:
        values = {"user": self.owner.user, "host": self.owner.host, "pid": self.owner.pid,
                  "pidns": self.owner.pid_namespace, "run": self.owner.run_id,
                  "token": self.token, "expires_at": self.expires_at}
        return " ".join(f"{k}={_SAFE_VALUE.sub('_', str(v)) or '-'}" for k, v in values.items())

    @classmethod
    def parse(cls, text: str) -> "Lease | None":
        fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
        pidns = fields.get("pidns", "-")
        try:
            owner = LockOwner(fields["user"], fields["host"], int(fields["pid"]), fields["run"],
                              "" if pidns == "-" else pidns)
            return cls(owner, fields["token"], int(fields["expires_at"]))
        except (KeyError, ValueError):
            return None  # being written, or not bench's


@dataclass(frozen=True)
class _Seen:
    """The lock as one look at the device found it."""

    now: int                 # device clock
    exists: bool
    mtime: int | None        # of the lock directory
    lease: Lease | None      # None: no (readable) owner file yet


class OnDeviceLock:
    """`with OnDeviceLock(session, owner, wait=True):` holds the device for every bench.

    wait=False: DeviceBusy at once, naming the holder. wait=True: poll until the lock is free
    or stale; DeviceBusy after `timeout_s` (None: no limit), Cancelled once `stop` is set.
    """

    def __init__(self, session: Shell, owner: LockOwner, wait: bool = True,
                 timeout_s: float | None = None, stop: threading.Event | None = None,
                 log: Callable[[str], None] = lambda _m: None, lease_s: float = LEASE_S,
                 path: str = LOCK_DIR):
        self.session, self.owner, self.wait, self.timeout_s = session, owner, wait, timeout_s
        self.stop, self.log, self.lease_s, self.path = stop or threading.Event(), log, lease_s, path
        self.token = secrets.token_hex(8)
        self.lost = False  # set when another process took the lock over while it was held
        self._clock_offset_s = 0.0  # device clock - host clock
        self._held = False
        self._renewal_stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def serial(self) -> str:
        return self.session.serial

    @property
    def held(self) -> bool:
        return self._held

    # -- taking it -------------------------------------------------------------------------------
    def acquire(self) -> "OnDeviceLock":
        if self._held:
            raise RuntimeError(f"device lock on {self.serial} already held by this OnDeviceLock")
        self._clock_offset_s = self._device_now() - time.time()
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        said = None
        # Known as ours before the owner file names it: another thread of this process that
        # reaches the same device (through another serial or server) must not see the new
        # lock as one this process left behind.
        with _held_guard:
            _held_tokens.add(self.token)
        try:
            while True:
                if self.stop.is_set():
                    raise Cancelled(f"{self.serial}: stopped waiting for the device lock")
                seen = self._try_take()
                if seen is None:
                    break
                if not seen.exists:  # released between the two looks: try again soon
                    self.stop.wait(POLL_INTERVAL_S / 10)
                    continue
                if not self.wait or (deadline is not None and time.monotonic() >= deadline):
                    raise self._busy(seen)
                holder = seen.lease.owner.describe() if seen.lease else "a bench process"
                if holder != said:
                    self.log(f"{self.serial}: waiting for the device lock held by {holder}")
                    said = holder
                self.stop.wait(POLL_INTERVAL_S)
        except BaseException:
            with _held_guard:
                _held_tokens.discard(self.token)
            raise
        self._held = True
        self._renewal_stop.clear()
        self._renewer = threading.Thread(target=self._renew_until_released, daemon=True,
                                         name=f"lease-{self.serial}")
        self._renewer.start()
        return self

    def _try_take(self) -> _Seen | None:
        """None when this process now holds the lock; else the lock as found."""
        if self._create():
            return None
        seen = self._look()
        if seen.exists and self._stale(seen) and self._take_over(seen):
            return None
        return seen

    def _create(self) -> bool:
        """Make the lock directory and name this process in it; False when it exists."""
        lock = shlex.quote(self.path)
        made = self.session.shell(f"mkdir {lock}")
        if made.status != 0:
            if "exists" in made.output.lower():
                return False
            raise DeviceError(f"{self.serial}: cannot create the device lock {self.path}: "
                              f"{made.output.strip()[:200]}")
        named = self.session.shell(f"echo {shlex.quote(self._lease().line())} > {lock}/owner")
        if named.status != 0:
            self.session.shell(f"rm -r -f {lock}")
            raise DeviceError(f"{self.serial}: cannot write the device lock's owner file "
                              f"{self.path}/owner: {named.output.strip()[:200]}")
        return True

    def _stale(self, seen: _Seen) -> bool:
        lease = seen.lease
        if lease is None:  # a taker died between mkdir and writing the owner file
            return seen.mtime is not None and seen.now - seen.mtime > self.lease_s
        if lease.expires_at <= seen.now:
            return True
        owner = lease.owner
        if not owner.on_this_host():
            return False
        if owner.pid == os.getpid():
            with _held_guard:
                return lease.token not in _held_tokens
        return not pid_alive(owner.pid)

    def _take_over(self, stale: _Seen) -> bool:
        lock, gate = shlex.quote(self.path), shlex.quote(self.path + ".takeover")
        if self.session.shell(f"mkdir {gate} 2>/dev/null").status != 0:
            self._clear_dead_gate()
            return False
        try:
            again = self._look()  # still the same stale lock, not one taken meanwhile?
            if again.lease != stale.lease or again.mtime != stale.mtime:
                return False
            self.session.shell(f"rm -r -f {lock}")
            if not self._create():  # a plain taker was quicker: the lock is its now
                return False
        finally:
            self.session.shell(f"rm -r -f {gate}")
        was = stale.lease.owner.describe() if stale.lease else "an unnamed holder"
        self.log(f"{self.serial}: took over the stale device lock of {was}")
        return True

    def _clear_dead_gate(self) -> None:
        gate = self.path + ".takeover"
        seen = self._look(gate)
        if seen.mtime is not None and seen.now - seen.mtime > TAKEOVER_STALE_S:
            self.session.shell(f"rm -r -f {shlex.quote(gate)}")

    # -- holding it ------------------------------------------------------------------------------
    def _renew_until_released(self) -> None:
        every_s = max(self.lease_s / 4, 0.1)
        while not self._renewal_stop.wait(every_s):
            try:
                self._renew()
            except DeviceError:
                pass  # the device may be back before the lease ends; the next round tries
            if self.lost:
                return

    def _renew(self) -> None:
        lock = shlex.quote(self.path)
        mine = shlex.quote(f"token={self.token}")
        result = self.session.shell(
            f"grep -q {mine} {lock}/owner && echo {shlex.quote(self._lease().line())} > "
            f"{lock}/owner.new && mv {lock}/owner.new {lock}/owner")
        if result.status == 0:
            return
        seen = self._look()
        if seen.lease is None or seen.lease.token != self.token:
            self.lost = True
            holder = seen.lease.owner.describe() if seen.lease else "nobody"
            self.log(f"{self.serial}: WARNING: lost the device lock (held now by {holder}); "
                     "samples from here on may share the device")

    # -- letting go ------------------------------------------------------------------------------
    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._renewal_stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.session.timeout_s)
        lock = shlex.quote(self.path)
        mine = shlex.quote(f"token={self.token}")
        for attempt in range(3):
            try:
                self.session.shell(f"grep -q {mine} {lock}/owner && rm -r {lock}")
                break
            except DeviceError:
                # Left behind, the lock is stale once its lease ends (for this host's bench
                # processes at once: this token is no longer held).
                if attempt < 2:
                    time.sleep(1.0)
        with _held_guard:
            _held_tokens.discard(self.token)

    def __enter__(self) -> "OnDeviceLock":
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()

    # -- reading the device ----------------------------------------------------------------------
    def _look(self, path: str | None = None) -> _Seen:
        lock = shlex.quote(path or self.path)
        out = self.session.shell(f'echo "now=$(date +%s)"; '
                                 f'echo "mtime=$(stat -c %Y {lock} 2>/dev/null)"; '
                                 f'echo "owner=$(cat {lock}/owner 2>/dev/null)"').stdout
        values = _values(out)
        now = _int(values.get("now"))
        if now is None:
            raise DeviceError(f"{self.serial}: cannot read the device clock for its lock: "
                              f"{out.strip()[:200]}")
        mtime = _int(values.get("mtime"))
        lease = Lease.parse(values.get("owner", ""))
        return _Seen(now, mtime is not None or lease is not None, mtime, lease)

    def _device_now(self) -> int:
        out = self.session.shell("date +%s").stdout.strip()
        if not out.isdigit():
            raise DeviceError(f"{self.serial}: `date +%s` gave {out[:80]!r}, not epoch seconds")
        return int(out)

    def _lease(self) -> Lease:
        expires = int(time.time() + self._clock_offset_s + self.lease_s)
        return Lease(self.owner, self.token, expires)

    def _busy(self, seen: _Seen) -> DeviceBusy:
        if seen.lease is not None:
            holder = seen.lease.owner.describe()
            ends = f"lease ends in {max(0, seen.lease.expires_at - seen.now)} s"
            pid = seen.lease.owner.pid
        else:
            holder, ends, pid = "a bench process still writing its name", "", None
        waited = f" after waiting {self.timeout_s:g} s" if self.wait else ""
        return DeviceBusy(f"device {self.serial} is busy: held by {holder}{waited} "
                          f"(lock {self.path} on the device{'; ' + ends if ends else ''})", pid)


def _values(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def lock_holder(session: Shell) -> tuple[Lease | None, int | None]:
    """Who holds the device's lock now (None: nobody), and the device's clock (`bench doctor`)."""
    lock = shlex.quote(LOCK_DIR)
    values = _values(session.shell(f'echo "now=$(date +%s)"; '
                                   f'echo "owner=$(cat {lock}/owner 2>/dev/null)"').stdout)
    return Lease.parse(values.get("owner", "")), _int(values.get("now"))
