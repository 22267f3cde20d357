"""DeviceSession: everything bench does to one device, over adbutils and the device's own adb server.

There is one implementation. A virtual device is not a second one: it is a device that this
class reaches through the real adb server, exactly as a phone.
"""
from __future__ import annotations

import io
import re
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import adbutils
from adbutils._adb import AdbConnection
from adbutils.errors import AdbError, AdbTimeout

from harness.errors import BenchError, DeviceError

# Shell exit statuses that mean the shell could not run the program (not the program's own).
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
CANCEL_POLL_S = 0.25


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


class ServerBoundClient(adbutils.AdbClient):
    """An AdbClient whose every connection (list, shell, sync, connect) goes to its own server,
    never starts a server, and always has a timeout."""

    def __init__(self, host: str, port: int, socket_timeout: float):
        super().__init__(host=host, port=port, socket_timeout=socket_timeout)
        self._timeout_s = socket_timeout

    def make_connection(self, timeout: float | None = None) -> AdbConnection:
        try:
            conn = _NoAutoStartConnection(self.host, self.port)
        except TimeoutError:
            raise AdbTimeout("connect to adb server timeout") from None
        # Sync (push) asks for no timeout at all; a stalled link must still fail.
        conn.conn.settimeout(timeout or self._timeout_s)
        return conn


@dataclass
class ShellResult:
    status: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class DeviceInfo:
    serial: str
    server: str
    state: str
    model: str | None = None
    abi: str | None = None
    sdk: int | None = None
    battery_pct: int | None = None
    temperature_c: float | None = None
    props: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "serial": self.serial, "server": self.server, "state": self.state,
            "model": self.model, "abi": self.abi, "sdk": self.sdk,
            "battery_pct": self.battery_pct, "temperature_c": self.temperature_c,
        }


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
        from harness.devices.telemetry import read_telemetry  # it builds on this module

        snapshot = read_telemetry(self)
        info.battery_pct, info.temperature_c = snapshot.battery_pct, snapshot.max_temp_c
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
    def push(self, local: Path, remote: str, mode: int = 0o644) -> int:
        """Push one file; returns bytes sent."""
        size = Path(local).stat().st_size
        try:
            self._device.sync.push(str(local), remote, mode=mode)
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

    def push_cached(self, files: list[tuple[Path, str, str, int]]) -> int:
        """Push (local, remote, sha256, mode) files whose sha256 on the device differs.

        Returns the bytes pushed (0 when everything was already there).
        """
        on_device = self.remote_sha256([remote for _l, remote, _h, _m in files])
        pushed = 0
        for local, remote, sha256, mode in files:
            if on_device.get(remote) == sha256:
                continue
            dirname = remote.rsplit("/", 1)[0]
            self.shell(f"mkdir -p {shlex.quote(dirname)}")
            pushed += self.push(local, remote, mode=mode)
            if mode & 0o111:
                self.shell(f"chmod {mode:o} {shlex.quote(remote)}")
        return pushed

    def free_bytes(self, path: str) -> int:
        result = self.shell(f"df -k {shlex.quote(path)}")
        rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
        if result.status != 0 or not rows or len(rows[-1]) < 4:
            raise DeviceError(f"{self.serial}: cannot read free space of {path}: {result.output.strip()}")
        return int(rows[-1][3]) * 1024


class CommandTimeout(DeviceError):
    """A device command ran past its deadline (a hung benchmark, a stalled link)."""


class Cancelled(BenchError):
    """A command or a wait given up because the caller is stopping (Ctrl-C). Not a
    DeviceError: the device did nothing wrong, so nothing retries it or records a failure."""


def parse_dumpsys_battery(text: str) -> tuple[int | None, float | None]:
    level = re.search(r"^\s*level:\s*(\d+)", text, flags=re.M)
    temp = re.search(r"^\s*temperature:\s*(-?\d+)", text, flags=re.M)
    return (int(level.group(1)) if level else None,
            int(temp.group(1)) / 10 if temp else None)
