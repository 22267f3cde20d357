"""Reusable pieces for tests that need a virtual device behind a real adb server.

Plain context managers (no pytest magic), so any test module can wrap them in its own fixtures:

    with adb_server(tmp_path / "adb") as adb, virtual_device(tmp_path / "dev1") as device:
        serial = adb.connect(device)          # trusts adb's key, "127.0.0.1:<port>", "device"
        adb.run("-s", serial, "shell", "getprop ro.product.cpu.abi")
        adb.client().device(serial=serial).sync.push(...)
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import adbutils

from device_agents.virtual.adb_auth import ADB_AUTH_SIGNATURE, ADB_AUTH_TOKEN, TRUSTED_KEYS_FILE
from device_agents.virtual.protocol import (A_AUTH, A_CNXN, A_VERSION, HEADER_SIZE, MAX_PAYLOAD,
                                            Message, decode_header, encode)
from harness.config import BenchmarkSettings
from harness.targets.adb.adb_binary import adb_path

REPO_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_BENCHMARK_MODEL = REPO_ROOT / "device_agents" / "bin" / "x86_64" / "benchmark_model"
# benchmark_model settings for lab tests that need samples, not figures: a launch of well
# under a second on a tiny model.
FAST_BENCHMARK = BenchmarkSettings(num_runs=3, warmup_runs=1, min_secs=0.02, warmup_min_secs=0.01,
                                   max_secs=20)
ADB_PATH = adb_path()  # the adb bench itself runs (harness/targets/adb/adb_binary.py)
# Generous deadlines: only how long to wait before giving up, never what a test asserts.
DEVICE_START_TIMEOUT_S = 60.0
ADB_COMMAND_TIMEOUT_S = 120.0


def wait_until(predicate, timeout_s: float, poll_s: float = 0.1) -> bool:
    """Poll ``predicate`` until true; False once ``timeout_s`` (a give-up bound only) passed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


def host_processes_with_root(fs_root: Path) -> list[int]:
    """pids of host processes a virtual device started: each carries the device's root
    (BENCH_DEVICE_ROOT) in its environment."""
    marker = f"BENCH_DEVICE_ROOT={Path(fs_root).resolve()}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "environ").read_bytes().split(b"\0"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def benchmark_processes(fs_root: Path) -> list[int]:
    """pids of the benchmark_model processes a virtual device runs on the host."""
    pids = []
    for pid in host_processes_with_root(fs_root):
        try:
            if b"benchmark_model" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class DeviceProcess:
    """A running ``python -m device_agents.virtual`` process."""

    state_dir: Path
    serial: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def fs_root(self) -> Path:
        """Host folder holding the device's ``/``."""
        return self.state_dir / "fs"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@contextmanager
def virtual_device(state_dir: Path, serial: str | None = None, verbose: bool = False
                   ) -> Iterator[DeviceProcess]:
    """Start a virtual device on a free port (the device binds port 0 itself: no race)."""
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    serial = serial or f"virtual-{state_dir.name}"
    log_path = state_dir / "device.log"
    command = [sys.executable, "-m", "device_agents.virtual", "--state-dir", str(state_dir),
               "--serial", serial, "--port", "0"] + (["--verbose"] if verbose else [])
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=_python_env(),
                                   stdout=subprocess.PIPE, stderr=log_file,
                                   stdin=subprocess.DEVNULL)
    device = DeviceProcess(state_dir, serial, 0, process, log_path)
    try:
        device.port = _wait_ready(process, log_path)
        yield device
    finally:
        device.stop()
        if process.stdout is not None:
            process.stdout.close()


def _wait_ready(process: subprocess.Popen, log_path: Path) -> int:
    deadline = time.monotonic() + DEVICE_START_TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.2)
        if ready:
            line = process.stdout.readline().decode().strip()
            if line.startswith("READY "):
                return int(line.split()[1])
            if not line and process.poll() is not None:
                break
        elif process.poll() is not None:
            break
    process.kill()
    raise RuntimeError(f"virtual device did not start:\n{log_path.read_text(errors='replace')[-4000:]}")


@dataclass
class AdbServer:
    """A real adb server (the adbutils wheel's binary) on its own port."""

    port: int
    home: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def run(self, *args: str, input_bytes: bytes | None = None,
            timeout_s: float = ADB_COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
        """``adb -P <port> args...``; returns the completed process (never raises on status)."""
        return subprocess.run([ADB_PATH, "-P", str(self.port), *args], env=self.env,
                              input=input_bytes,
                              stdin=None if input_bytes is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout_s)

    def client(self) -> adbutils.AdbClient:
        return adbutils.AdbClient(host="127.0.0.1", port=self.port)

    def states(self) -> dict[str, str]:
        """serial -> state, from ``adb devices``."""
        out = self.run("devices").stdout.decode()
        pairs = (line.split("\t") for line in out.splitlines()[1:] if "\t" in line)
        return {serial: state for serial, state in pairs}

    def wait_for_state(self, serial: str, state: str | None, timeout_s: float = 30.0) -> bool:
        """Poll until ``serial`` has ``state`` (None: is absent); False if it never did."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.states().get(serial) == state:
                return True
            time.sleep(0.2)
        return False

    @property
    def public_key_path(self) -> Path:
        """The key this server signs with (adb creates it in $HOME/.android at start)."""
        return self.home / ".android" / "adbkey.pub"

    def authorize_on(self, device: DeviceProcess) -> None:
        """Make ``device`` trust this server's key, as "always allow" on a phone does."""
        key = self.public_key_path.read_text().strip()
        keys_file = device.state_dir / TRUSTED_KEYS_FILE
        if key not in (keys_file.read_text().splitlines() if keys_file.exists() else []):
            with open(keys_file, "a") as keys:
                keys.write(key + "\n")

    def connect(self, device: DeviceProcess, timeout_s: float = 30.0, authorize: bool = True) -> str:
        """``adb connect`` the device and wait until it is online; returns its adb serial.

        ``authorize``: trust this server's key on the device first (a device trusts no key of
        its own accord)."""
        if authorize:
            self.authorize_on(device)
        result = self.run("connect", device.address)
        output = (result.stdout + result.stderr).decode()
        if "connected to" not in output:
            raise RuntimeError(f"adb connect {device.address} failed: {output}\n{device.log_tail()}")
        if not self.wait_for_state(device.address, "device", timeout_s):
            raise RuntimeError(f"{device.address} never came online: {self.states()}")
        return device.address


@contextmanager
def adb_server(home: Path) -> Iterator[AdbServer]:
    """Start an adb server on a free port with its own HOME (its own adbkey); kill it after."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "HOME": str(home),
        "ANDROID_USER_HOME": str(home / ".android"),
        # No mDNS discovery: only the devices a test connects exist for this server.
        "ADB_MDNS": "0",
        "ADB_MDNS_AUTO_CONNECT": "0",
    })
    for variable in ("ANDROID_SERIAL", "ANDROID_ADB_SERVER_PORT", "ADB_SERVER_SOCKET"):
        env.pop(variable, None)
    server = AdbServer(port=free_port(), home=home, env=env)
    started = server.run("start-server")
    if started.returncode != 0:
        raise RuntimeError(f"adb start-server failed: {started.stderr.decode()}")
    try:
        yield server
    finally:
        server.run("kill-server", timeout_s=30)




class RawHost:
    """The host side of the transport, by hand: to check what adb itself never varies (and to
    send what no adb sends)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def __enter__(self) -> "RawHost":
        return self

    def __exit__(self, *_exc) -> None:
        self.sock.close()

    def send(self, message: Message) -> None:
        self.sock.sendall(encode(message, with_checksum=True))

    def receive(self) -> Message:
        header = decode_header(self._exactly(HEADER_SIZE), max_payload=MAX_PAYLOAD)
        return Message(header.command, header.arg0, header.arg1, self._exactly(header.data_length))

    def connect(self, max_payload: int = 4096) -> Message:
        """CNXN; returns the device's answer (its AUTH token)."""
        self.send(Message(A_CNXN, A_VERSION, max_payload, b"host::features=shell_v2"))
        return self.receive()

    def handshake(self, key, max_payload: int = 4096) -> Message:
        """CNXN, then sign the device's AUTH token with ``key`` (tests.adb_test_keys);
        returns the device's CNXN."""
        challenge = self.connect(max_payload)
        assert (challenge.command, challenge.arg0, len(challenge.data)) == (A_AUTH, ADB_AUTH_TOKEN, 20)
        self.send(Message(A_AUTH, ADB_AUTH_SIGNATURE, 0, key.sign(challenge.data)))
        return self.receive()

    def has_pending(self, wait_s: float) -> bool:
        return bool(select.select([self.sock], [], [], wait_s)[0])

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data


def bench_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`bench ARGS` in this process (the CLI's own entry point): exit code, stdout, stderr."""
    from harness.cli import main

    monkeypatch.setattr(sys, "argv", ["bench", *args])
    try:
        main()
        code = 0
    except SystemExit as ended:
        code = ended.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err
