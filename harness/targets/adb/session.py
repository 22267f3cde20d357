"""DeviceSession: everything bench does to one device, over adbutils and the device's own adb server.

There is one implementation. A virtual device is not a second one: it is a device that this
class reaches through the real adb server, exactly as a phone.
"""
from __future__ import annotations

import io
import re
import shlex
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import adbutils
from adbutils._adb import AdbConnection
from adbutils.errors import AdbError, AdbTimeout

from harness.errors import DeviceError
from harness.targets.telemetry import read_telemetry
from harness.targets.base import (Cancelled, CommandTimeout, DeviceInfo, RemoteFileError,
                                  ShellResult)

# Shell exit statuses that mean the shell could not run the program (not the program's own).
CANCEL_POLL_S = 0.25
# Shell protocol v2 close-stdin: id 4, no data. Sources for this and the sync framing below:
# ../shared/reference/adb_protocol.md (from adb's shell_protocol.h, file_sync_protocol.h).
SHELL_V2_CLOSE_STDIN = bytes([4, 0, 0, 0, 0])

# The sync protocol (adb's file_sync_protocol.h): requests and replies are id(4) + u32 LE.
_SYNC_HEADER = struct.Struct("<4sI")
_SYNC_STAT_V1 = struct.Struct("<4sIII")  # STAT reply: id, mode, size, mtime
SYNC_DATA_MAX_BYTES = 64 * 1024  # SYNC_DATA_MAX: the largest DATA chunk a device accepts
# DATA chunks per sendall: 1 MiB, one full adb packet (the servers' max payload) per batch.
PUSH_BATCH_CHUNKS = 16
PUSH_PROGRESS_INTERVAL_S = 0.2


@dataclass(frozen=True)
class AdbServer:
    """An adb server by address; `name` is how reports refer to it."""

    host: str = "127.0.0.1"
    port: int = 5037
    name: str = "local"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def client(self, timeout_s: float = 10.0) -> adbutils.AdbClient:
        return ServerBoundClient(host=self.host, port=self.port, socket_timeout=timeout_s)


class _NoAutoStartConnection(AdbConnection):
    """adbutils runs `adb start-server` (default port 5037) when a connection fails, then retries
    the original port: a dead custom server would silently start a default one. Bench only
    talks to the servers it was given, so a failed connection is an error."""

    def _safe_connect(self):
        return self._create_socket()

    def close(self) -> None:
        """As adbutils' close without its 10 ms sleep after the shutdown: bench closes a
        connection only once it has read the reply, and at two connections a shell command the
        sleeps were a good part of a run's orchestration time."""
        if self.closed:
            return
        sock = self.conn
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()
        self._AdbConnection__conn = None  # adbutils' (name-mangled) socket attribute


class ServerBoundClient(adbutils.AdbClient):
    """An AdbClient whose every connection (list, shell, sync, connect) goes to its own server,
    never starts a server, and always has a timeout."""

    def __init__(self, host: str, port: int, socket_timeout: float):
        super().__init__(host=host, port=port, socket_timeout=socket_timeout)
        self._timeout_s = socket_timeout
        self._server_version: int | None = None

    def server_version(self) -> int:
        """Asked once per client: adbutils asks again before opening every transport (one more
        connection per shell command), and a server's version does not change under it."""
        if self._server_version is None:
            self._server_version = super().server_version()
        return self._server_version

    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        try:
            conn = _NoAutoStartConnection(self.host, self.port)
        except TimeoutError:
            raise AdbTimeout("connect to adb server timeout") from None
        # Sync (push) asks for no timeout at all; a stalled link must still fail.
        conn.conn.settimeout(timeout or self._timeout_s)
        # Two writes in a row (a push's SEND then its data, its data then DONE) would otherwise
        # wait out the server's delayed ACK: 40 ms on Linux, the whole time of a small push.
        conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


def list_device_states(server: AdbServer, timeout_s: float = 5.0) -> list[tuple[str, str]]:
    """(serial, state) of every device the server knows, offline ones included."""
    try:
        return [(d.serial, d.state) for d in server.client(timeout_s).list()]
    except (AdbError, OSError) as exc:
        raise DeviceError(f"adb server {server.name} ({server.address}) unreachable: {exc}") from exc


class DeviceSession:
    def __init__(self, serial: str, server: AdbServer, timeout_s: float = 20.0):
        self.serial = serial
        self.server = server
        self.timeout_s = timeout_s
        self._device = server.client(timeout_s).device(serial)

    # -- state -------------------------------------------------------------------------------
    def state(self) -> str:
        for serial, state in list_device_states(self.server):
            if serial == self.serial:
                return state
        return "not found"

    def require_online(self) -> None:
        state = self.state()
        if state == "not found":
            raise DeviceError(f"device {self.serial} not found on adb server {self.server.name}")
        if state != "device":
            raise DeviceError(f"device {self.serial} is {state}")

    def info(self) -> DeviceInfo:
        state = self.state()
        info = DeviceInfo(serial=self.serial, server=self.server.name, state=state)
        if state != "device":
            return info
        info.props = self.getprops()
        info.model = info.props.get("ro.product.model")
        info.abi = info.props.get("ro.product.cpu.abi")
        sdk = info.props.get("ro.build.version.sdk", "")
        info.sdk = int(sdk) if sdk.isdigit() else None

        snapshot = read_telemetry(self)
        info.battery_pct, info.temperature_c = snapshot.battery_pct, snapshot.gate_temp_c
        info.telemetry = snapshot
        return info

    def getprops(self) -> dict[str, str]:
        out = self.shell("getprop").stdout
        return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]$", out, flags=re.M))

    # -- shell -------------------------------------------------------------------------------
    def shell(self, command: str, timeout_s: float | None = None,
              cancel: threading.Event | None = None) -> ShellResult:
        """Run `command` with shell protocol v2: separate stdout/stderr and the exit status.

        The deadline is for the whole command, not per read, so a silent hang is caught.
        Raises DeviceError when the link fails or the deadline passes, and Cancelled soon after
        another thread sets `cancel`. Either way the stream is closed, and the device kills
        the command (as adbd does).
        """
        timeout_s = timeout_s or self.timeout_s
        deadline = time.monotonic() + timeout_s
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{self.serial}: not started, the run is stopping: {command[:80]}")
        try:
            conn = self._device.open_transport(timeout=timeout_s)
        except (AdbError, OSError) as exc:
            raise DeviceError(f"{self.serial}: cannot open shell: {exc}") from exc
        stdout, stderr = io.BytesIO(), io.BytesIO()
        try:
            conn.send_command("shell,v2:" + command)
            conn.check_okay()
            # No stdin, said at once as the adb CLI does: a device may otherwise wait for some
            # (the virtual one waits 20 ms per command) and a program reading it gets EOF.
            conn.conn.sendall(SHELL_V2_CLOSE_STDIN)
            while True:
                header = self._read(conn, 5, deadline, command, cancel)
                length = int.from_bytes(header[1:5], "little")
                data = self._read(conn, length, deadline, command, cancel) if length else b""
                if header[0] == 1:
                    stdout.write(data)
                elif header[0] == 2:
                    stderr.write(data)
                elif header[0] == 3:
                    return ShellResult(data[0] if data else 255,
                                       stdout.getvalue().decode(errors="replace"),
                                       stderr.getvalue().decode(errors="replace"))
        except AdbError as exc:
            raise DeviceError(f"{self.serial}: shell failed: {exc}") from exc
        except OSError as exc:  # sending the command or close-stdin (reads raise their own)
            raise DeviceError(f"{self.serial}: connection lost: {exc}") from exc
        finally:
            conn.close()

    def _read(self, conn, n: int, deadline: float, command: str,
              cancel: threading.Event | None = None) -> bytes:
        chunks = []
        while n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(f"{self.serial}: command timed out: {command[:80]}")
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"{self.serial}: abandoned, the run is stopping: {command[:80]}")
            # Short reads when cancellable: how soon a stop is noticed.
            conn.conn.settimeout(min(remaining, CANCEL_POLL_S if cancel is not None else 5.0))
            try:
                chunk = conn.conn.recv(n)
            except socket.timeout:
                continue
            except OSError as exc:
                raise DeviceError(f"{self.serial}: connection lost: {exc}") from exc
            if not chunk:
                raise DeviceError(f"{self.serial}: connection lost (device disconnected?)")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    # -- files -------------------------------------------------------------------------------
    def push(self, local: Path, remote: str, mode: int = 0o644,
             progress: Callable[[int], None] | None = None) -> int:
        """Push one file; returns bytes sent. `progress` is called with the bytes sent so far,
        a few times a second at most, and once at the end."""
        size = Path(local).stat().st_size
        try:
            self._sync_push(Path(local), remote, mode, _Throttled(progress))
        except (AdbError, OSError, EOFError) as exc:
            free = None
            try:
                free = self.free_bytes(str(Path(remote).parent))
            except DeviceError:
                pass
            hint = (f" (device has {free} bytes free, file is {size})"
                    if free is not None and free < size else "")
            raise DeviceError(f"{self.serial}: push of {Path(local).name} to {remote} failed: "
                              f"{str(exc) or type(exc).__name__ + ' (connection lost?)'}{hint}") from exc
        return size

    def _sync_push(self, local: Path, remote: str, mode: int, progress: "_Throttled") -> None:
        """SEND, DATA..., DONE over one `sync:` stream, then the device's OKAY or FAIL.

        adbutils' own push sends 4 KiB chunks, two send calls each: the adb server then forwards
        tiny packets and bench pushed at half `adb push`'s speed. Here the file is read straight
        into large batches of framed 64 KiB chunks, each batch one sendall. The socket keeps the
        session's timeout (make_connection), so a stalled link fails instead of hanging."""
        conn = self._device.open_transport(timeout=self.timeout_s)
        with conn, open(local, "rb", buffering=0) as source:
            conn.send_command("sync:")
            conn.check_okay()
            sock = conn.conn
            if _sync_is_directory(sock, remote):  # as adb push: into the folder, same name
                remote = remote.rstrip("/") + "/" + local.name
            _send_request(sock, b"SEND", f"{remote},{stat.S_IFREG | mode}")
            batch = bytearray(PUSH_BATCH_CHUNKS * (_SYNC_HEADER.size + SYNC_DATA_MAX_BYTES))
            sent_bytes = 0
            while True:
                framed_bytes, data_bytes = _fill_batch(source, batch)
                if not data_bytes:
                    break
                sock.sendall(memoryview(batch)[:framed_bytes])
                sent_bytes += data_bytes
                progress(sent_bytes)
            sock.sendall(_SYNC_HEADER.pack(b"DONE", int(time.time())))
            _read_sync_status(sock)
            progress(sent_bytes, final=True)

    def pull_bytes(self, remote: str, max_bytes: int) -> bytes | None:
        """A device file's content over `sync:` (STAT, then RECV: what `adb pull` does); None
        when there is no such file. Reading stops past `max_bytes` (the caller wanted at most
        that much: a longer file comes back `max_bytes + 1` long)."""
        try:
            conn = self._device.open_transport(timeout=self.timeout_s)
            with conn:
                conn.send_command("sync:")
                conn.check_okay()
                sock = conn.conn
                mode = _sync_stat_mode(sock, remote)
                if mode == 0:
                    return None
                if not stat.S_ISREG(mode):
                    raise RemoteFileError(f"{self.serial}: {remote} is not a file")
                _send_request(sock, b"RECV", remote)
                data = bytearray()
                while True:
                    reply_id, length = _SYNC_HEADER.unpack(_recv_exactly(sock, _SYNC_HEADER.size))
                    if reply_id == b"DONE":
                        return bytes(data)
                    if reply_id == b"FAIL":  # the device refused the file, the link is fine
                        said = _recv_exactly(sock, length).decode("utf-8", "replace")
                        raise RemoteFileError(f"{self.serial}: cannot read {remote}: {said}")
                    if reply_id != b"DATA" or length > SYNC_DATA_MAX_BYTES:
                        raise AdbError(f"unexpected sync reply {reply_id!r}")
                    data += _recv_exactly(sock, length)
                    if len(data) > max_bytes:
                        return bytes(data[:max_bytes + 1])
        except (AdbError, OSError, EOFError) as exc:
            raise DeviceError(f"{self.serial}: pull of {remote} failed: "
                              f"{str(exc) or type(exc).__name__ + ' (connection lost?)'}") from exc

    def remote_sha256(self, remote_paths: list[str]) -> dict[str, str]:
        """sha256 of files on the device (missing files are absent from the result)."""
        if not remote_paths:
            return {}
        quoted = " ".join(shlex.quote(p) for p in remote_paths)
        out = self.shell(f"sha256sum {quoted} 2>/dev/null").stdout
        found = {}
        for line in out.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
                found[parts[1].strip()] = parts[0]
        return found

    def free_bytes(self, path: str) -> int:
        result = self.shell(f"df -k {shlex.quote(path)}")
        rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
        if result.status != 0 or not rows or len(rows[-1]) < 4:
            raise DeviceError(f"{self.serial}: cannot read free space of {path}: {result.output.strip()}")
        return int(rows[-1][3]) * 1024


class _Throttled:
    """A push's progress callback, called at most every PUSH_PROGRESS_INTERVAL_S, and once at
    the end: a progress bar needs no more, and one call per 1 MiB batch would be hundreds a
    second on a fast link."""

    def __init__(self, report: Callable[[int], None] | None):
        self._report = report
        self._last_s = time.monotonic()

    def __call__(self, sent_bytes: int, final: bool = False) -> None:
        if self._report is None:
            return
        now_s = time.monotonic()
        if final or now_s - self._last_s >= PUSH_PROGRESS_INTERVAL_S:
            self._last_s = now_s
            self._report(sent_bytes)


def _send_request(sock: socket.socket, request_id: bytes, path: str) -> None:
    raw = path.encode("utf-8")
    sock.sendall(_SYNC_HEADER.pack(request_id, len(raw)) + raw)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the sync stream closed early (connection lost?)")
        data += chunk
    return bytes(data)


def _sync_stat_mode(sock: socket.socket, remote: str) -> int:
    """STAT (v1, which every device answers): the path's mode, 0 when it does not exist."""
    _send_request(sock, b"STAT", remote)
    reply_id, mode, _size, _mtime = _SYNC_STAT_V1.unpack(_recv_exactly(sock, _SYNC_STAT_V1.size))
    if reply_id != b"STAT":
        raise AdbError(f"unexpected sync reply {reply_id!r}")
    return mode


def _sync_is_directory(sock: socket.socket, remote: str) -> bool:
    return stat.S_ISDIR(_sync_stat_mode(sock, remote))


def _fill_batch(source: BinaryIO, batch: bytearray) -> tuple[int, int]:
    """Read the file straight into `batch` as framed DATA chunks (no copy in Python);
    returns (bytes framed, data bytes), (0, 0) at the end of the file."""
    view = memoryview(batch)
    framed_bytes = data_bytes = 0
    while framed_bytes + _SYNC_HEADER.size + SYNC_DATA_MAX_BYTES <= len(batch):
        start = framed_bytes + _SYNC_HEADER.size
        read_bytes = source.readinto(view[start:start + SYNC_DATA_MAX_BYTES])
        if not read_bytes:
            break
        _SYNC_HEADER.pack_into(batch, framed_bytes, b"DATA", read_bytes)
        framed_bytes = start + read_bytes
        data_bytes += read_bytes
    return framed_bytes, data_bytes


def _read_sync_status(sock: socket.socket) -> None:
    """The device's one reply to a SEND: OKAY, or FAIL with its message (raised)."""
    reply_id, length = _SYNC_HEADER.unpack(_recv_exactly(sock, _SYNC_HEADER.size))
    if reply_id == b"OKAY":
        return
    if reply_id == b"FAIL":
        raise AdbError(_recv_exactly(sock, length).decode("utf-8", "replace"))
    raise AdbError(f"unexpected sync reply {reply_id!r}")
