"""The ``sync:`` service (adb push / pull / ls / stat), as adbd's ``file_sync_service.cpp``.

Requests are ``id(4) + len(u32 LE) + path``; the host's byte stream is split and merged
arbitrarily across WRTE packets, so everything is read through ``Stream.read_exactly``.
Every device path goes through ``Sandbox.host_path``: nothing is read or written outside it.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import struct
import uuid
from pathlib import Path

from device_agents.virtual.faults import FaultWatcher
from device_agents.virtual.sandbox import HOST_MODE_BITS, Sandbox
from device_agents.virtual.transport import Stream

log = logging.getLogger("bench.virtual.sync")

SYNC_DATA_MAX = 64 * 1024  # largest DATA chunk either side may send
MAX_PATH_BYTES = 1024
# Pulls are sent as ~1 MiB batches of DATA packets: one WRTE round trip per batch, not per chunk.
RECV_BATCH_BYTES = 16 * SYNC_DATA_MAX

_ID_LEN = struct.Struct("<4sI")
_STAT_V1 = struct.Struct("<4sIII")  # id, mode, size, mtime
_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # id, error, dev, ino, mode, nlink, uid, gid, size, a/m/ctime
_DENT_V1 = struct.Struct("<4sIIII")  # id, mode, size, mtime, namelen
_DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")  # stat v2 + namelen


class SyncFailure(Exception):
    """Ends the sync session after a FAIL was sent (as adbd's handlers returning false)."""


class PushDropped(Exception):
    """The drop_after_push_bytes fault cut the link in the middle of a push."""


def _errno_of(error: OSError) -> int:
    if error.errno:
        return error.errno
    # SandboxEscape carries no errno: to the host it is a plain permission error.
    return errno.EACCES if isinstance(error, PermissionError) else errno.EIO


class SyncSession:
    def __init__(self, stream: Stream, sandbox: Sandbox, faults: FaultWatcher):
        self.stream = stream
        self.sandbox = sandbox
        self.faults = faults

    async def run(self) -> None:
        handlers = {
            b"STAT": self._stat_v1, b"STA2": self._stat_v2, b"LST2": self._lstat_v2,
            b"LIST": self._list_v1, b"LIS2": self._list_v2,
            b"SEND": self._send, b"RECV": self._recv,
        }
        try:
            while True:
                try:
                    request_id, length = _ID_LEN.unpack(await self.stream.read_exactly(8))
                except EOFError:
                    return  # adbutils just closes the socket instead of sending QUIT
                if request_id == b"QUIT":
                    return
                handler = handlers.get(request_id)
                if handler is None:
                    await self._fail(f"unknown command {request_id!r}")
                    return
                if length > MAX_PATH_BYTES:
                    await self._fail("path too long")
                    return
                path = (await self.stream.read_exactly(length)).decode("utf-8", "surrogateescape")
                await handler(path)
        except SyncFailure:
            return

    # -- helpers ---------------------------------------------------------------------------
    async def _fail(self, message: str) -> None:
        data = message.encode()
        await self.stream.write(_ID_LEN.pack(b"FAIL", len(data)) + data)

    def _host(self, device_path: str) -> Path:
        return self.sandbox.host_path(device_path)  # raises SandboxEscape (a PermissionError)

    def _stat(self, device_path: str, follow: bool) -> os.stat_result:
        host = self._host(device_path)
        return os.stat(host) if follow else os.lstat(host)

    @staticmethod
    def _pack_v2(request_id: bytes, st: os.stat_result | None, error: int = 0) -> bytes:
        if st is None:
            return _STAT_V2.pack(request_id, error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        return _STAT_V2.pack(request_id, 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink,
                             st.st_uid, st.st_gid, st.st_size, int(st.st_atime),
                             int(st.st_mtime), int(st.st_ctime))

    # -- stat ------------------------------------------------------------------------------
    async def _stat_v1(self, path: str) -> None:
        try:
            st = self._stat(path, follow=False)
            reply = _STAT_V1.pack(b"STAT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                  int(st.st_mtime) & 0xFFFFFFFF)
        except OSError:
            reply = _STAT_V1.pack(b"STAT", 0, 0, 0)  # v1 has no errno: all zero = not found
        await self.stream.write(reply)

    async def _stat_v2(self, path: str, follow: bool = True, request_id: bytes = b"STA2") -> None:
        try:
            reply = self._pack_v2(request_id, self._stat(path, follow))
        except OSError as error:
            reply = self._pack_v2(request_id, None, _errno_of(error))
        await self.stream.write(reply)

    async def _lstat_v2(self, path: str) -> None:
        await self._stat_v2(path, follow=False, request_id=b"LST2")

    # -- list ------------------------------------------------------------------------------
    def _entries(self, path: str) -> list[tuple[str, os.stat_result]]:
        host = self._host(path)
        # Like readdir, "." and ".." are listed too (the adb client skips them itself).
        names = [".", ".."] + sorted(os.listdir(host))
        entries = []
        for name in names:
            try:
                entries.append((name, os.lstat(host / name)))
            except OSError:
                continue  # vanished meanwhile, as readdir+lstat races on a device
        return entries

    async def _list_v1(self, path: str) -> None:
        try:
            entries = self._entries(path)
        except OSError:
            entries = []  # v1 cannot report errors: an empty listing
        out = bytearray()
        for name, st in entries:
            raw = name.encode("utf-8", "surrogateescape")
            out += _DENT_V1.pack(b"DENT", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                 int(st.st_mtime) & 0xFFFFFFFF, len(raw)) + raw
        out += _DENT_V1.pack(b"DONE", 0, 0, 0, 0)
        await self.stream.write(bytes(out))

    async def _list_v2(self, path: str) -> None:
        out = bytearray()
        error = 0
        try:
            entries = self._entries(path)
        except OSError as failure:
            entries, error = [], _errno_of(failure)
        for name, st in entries:
            raw = name.encode("utf-8", "surrogateescape")
            out += _DENT_V2.pack(b"DNT2", 0, st.st_dev, st.st_ino, st.st_mode, st.st_nlink,
                                 st.st_uid, st.st_gid, st.st_size, int(st.st_atime),
                                 int(st.st_mtime), int(st.st_ctime), len(raw)) + raw
        out += _DENT_V2.pack(b"DONE", error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        await self.stream.write(bytes(out))

    # -- recv (pull) -----------------------------------------------------------------------
    async def _recv(self, path: str) -> None:
        try:
            handle = open(self._host(path), "rb")
        except OSError as error:
            await self._fail(f"open failed: {os.strerror(_errno_of(error))}")
            return
        with handle:
            while True:
                try:
                    batch = handle.read(RECV_BATCH_BYTES)
                except OSError as error:
                    await self._fail(f"read failed: {os.strerror(_errno_of(error))}")
                    raise SyncFailure from error
                if not batch:
                    break
                view = memoryview(batch)
                packets = []
                for start in range(0, len(view), SYNC_DATA_MAX):
                    chunk = view[start:start + SYNC_DATA_MAX]
                    packets.append(_ID_LEN.pack(b"DATA", len(chunk)))
                    packets.append(chunk)
                await self.stream.write(b"".join(packets))
        await self.stream.write(_ID_LEN.pack(b"DONE", 0))

    # -- send (push) -----------------------------------------------------------------------
    async def _send(self, spec: str) -> None:
        path, comma, mode_text = spec.rpartition(",")
        if not comma:
            await self._fail("missing , in ID_SEND_V1")
            raise SyncFailure
        mode = _parse_mode(mode_text)
        if stat.S_ISLNK(mode):
            # Symlinks could point outside the sandbox; a bench never needs to push one.
            await self._fail("symlinks are not supported by this virtual device")
            await self._discard_until_done()
            raise SyncFailure
        try:
            target = self._host(path)
            target.parent.mkdir(parents=True, exist_ok=True)  # feature fixed_push_mkdir
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        except OSError as error:
            await self._fail(f"couldn't create file: {os.strerror(_errno_of(error))}")
            await self._discard_until_done()
            raise SyncFailure from error

        faults = self.faults.current()
        free_bytes = self.sandbox.free_bytes(faults.storage_quota_bytes)
        # Written beside the target and renamed at DONE: a failed push leaves nothing behind.
        temp = target.with_name(f".{target.name}.push-{uuid.uuid4().hex[:8]}")
        written_bytes = 0
        link = self.stream.link
        try:
            with open(temp, "wb") as handle:
                while True:
                    chunk_id, size = _ID_LEN.unpack(await self.stream.read_exactly(8))
                    if chunk_id == b"DONE":
                        mtime = size
                        break
                    if chunk_id != b"DATA" or size > SYNC_DATA_MAX:
                        await self._fail(f"invalid data message: expected ID_DATA, got {chunk_id!r}")
                        raise SyncFailure
                    data = await self.stream.read_exactly(size)
                    link.pushed_bytes += size
                    drop_after = self.faults.current().drop_after_push_bytes
                    if drop_after is not None and link.pushed_bytes >= drop_after:
                        raise PushDropped
                    if written_bytes + size > free_bytes:
                        # Gone before the host hears of it: the host may look right after FAIL.
                        handle.close()
                        temp.unlink(missing_ok=True)
                        await self._fail(f"couldn't write \"{path}\": No space left on device")
                        await self._discard_until_done()
                        raise SyncFailure
                    handle.write(data)
                    written_bytes += size
            # Permission bits only: no setuid/setgid file of the lab's user on the host.
            os.chmod(temp, (stat.S_IMODE(mode) & HOST_MODE_BITS) or 0o644)
            os.utime(temp, (mtime, mtime))
            os.replace(temp, target)
        except PushDropped:
            temp.unlink(missing_ok=True)
            link.drop("drop_after_push_bytes")  # cancels this task too
            return
        except OSError as error:
            await self._fail(f"couldn't write \"{path}\": {os.strerror(_errno_of(error))}")
            raise SyncFailure from error
        finally:
            temp.unlink(missing_ok=True)  # no-op after a successful rename
        await self.stream.write(_ID_LEN.pack(b"OKAY", 0))

    async def _discard_until_done(self) -> None:
        """After a failure adbd keeps reading DATA until DONE so the host sees the FAIL."""
        while True:
            chunk_id, size = _ID_LEN.unpack(await self.stream.read_exactly(8))
            if chunk_id != b"DATA":
                return
            await self.stream.read_exactly(size)


def _parse_mode(text: str) -> int:
    """Like ``strtoul(text, nullptr, 0)``: decimal, 0-prefixed octal or 0x hex."""
    text = text.strip()
    try:
        if text.lower().startswith("0x"):
            return int(text, 16)
        if text.startswith("0") and len(text) > 1:
            return int(text, 8)
        return int(text or "0", 10)
    except ValueError:
        return 0


async def serve_sync(stream: Stream, sandbox: Sandbox, faults: FaultWatcher) -> None:
    await SyncSession(stream, sandbox, faults).run()
