"""`bench lab up|status|down`: a lab of virtual Android devices behind an adb server of its own.

`up` starts N device processes and one `adb server nodaemon`, connects the devices with
`adb connect`, waits until the server lists each one as `device`, and records every pid it
started in `<state_dir>/lab.json`; `down` stops exactly those.

Each device trusts only the adb keys it is given (as a phone that has said "always allow" to
them): by default the key of the user who starts the lab, `~/.android/adbkey.pub`, which the
lab's own adb server signs with; more with `--authorize-key`. Any other adb server sees the
device `unauthorized`.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import device_agents
from device_agents.virtual.adb_auth import TRUSTED_KEYS_FILE, KeyFormatError, read_key_lines
from device_agents.virtual.cpus import plan_cpu_slices, shared_cores
from device_agents.virtual.faults import FAULT_NAMES, clear_faults, fault_value_problem, set_faults
from device_agents.virtual.sandbox import VirtualDeviceConfig
from harness.targets.adb.session import AdbServer, list_device_states
from harness.errors import DeviceError, UserError
from harness.targets.adb.adb_binary import adb_path
from harness.paths import state_dir as default_state_dir

LAB_FILE = "lab.json"


@dataclass
class VirtualDeviceRecord:
    serial: str       # what adb calls it: 127.0.0.1:PORT
    port: int
    pid: int
    state_dir: str
    host_cpus: list[int] | None = None  # the host cores it runs on; None: all of them


@dataclass
class LabState:
    adb_port: int
    adb_pid: int
    devices: list[VirtualDeviceRecord] = field(default_factory=list)
    started_at: float = 0.0

    @property
    def server(self) -> AdbServer:
        return AdbServer("127.0.0.1", self.adb_port, name="virtual-lab")

    def save(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        (base / LAB_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, base: Path | None = None) -> "LabState | None":
        path = (base or default_state_dir()) / LAB_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["devices"] = [VirtualDeviceRecord(**d) for d in data["devices"]]
        return cls(**data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project_root() -> str:
    return str(Path(device_agents.__file__).resolve().parent.parent)


def start_adb_server(port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, ADB_MDNS="0", ADB_MDNS_AUTO_CONNECT="0")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([adb_path(), "-P", str(port), "server", "nodaemon"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    server = AdbServer("127.0.0.1", port)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeviceError(f"adb server on port {port} exited: see {log_path}")
        try:
            server.client(2).server_version()
            return proc
        except Exception:
            time.sleep(0.1)
    proc.kill()
    raise DeviceError(f"adb server on port {port} did not start in 20 s: see {log_path}")


def user_adb_key_path() -> Path:
    """The public key adb signs with for this user: adb keeps its key pair in $HOME/.android."""
    return Path.home() / ".android" / "adbkey.pub"


def trusted_key_lines(extra_key_paths: list[Path] | tuple = ()) -> list[str]:
    """The user's adb key (adb creates it when its server first starts) and `extra_key_paths`."""
    lines = _key_lines(user_adb_key_path(), None)
    for path in extra_key_paths:
        lines += _key_lines(Path(path), "--authorize-key")
    return lines


def _key_lines(path: Path, option: str | None) -> list[str]:
    where = f"{option} {path}" if option else f"adb key {path}"
    try:
        return read_key_lines(path)
    except FileNotFoundError:
        fix = ("give the adbkey.pub of the adb that should reach the lab" if option else
               "start an adb server once (`adb start-server`) so that adb creates it")
        raise UserError(f"{where}: no such file; {fix}") from None
    except (OSError, KeyFormatError) as exc:
        raise UserError(f"{where}: not an adb public key ({exc}); give an adbkey.pub "
                        "as adb writes it") from None


def start_virtual_device(state_dir: Path, serial: str, port: int, faults: dict | None = None,
                         host_cpus: list[int] | None = None,
                         authorized_keys: list[str] | None = None,
                         profile: Path | None = None, rooted: bool = False,
                         flavour: str = "tflite") -> subprocess.Popen:
    """Start one virtual device process (on `host_cpus` only, when given); wait until it listens.

    The device trusts the adb public key lines `authorized_keys` (default: the user's key); it
    answers as the recorded phone of `profile` (device_agents.virtual.profile), has `su` when
    `rooted`, and bench gives it the `flavour` of benchmark_model it ships."""
    state_dir.mkdir(parents=True, exist_ok=True)
    VirtualDeviceConfig(serial=serial, port=port, state_dir=str(state_dir),
                        host_cpus=host_cpus, profile_dir=str(profile) if profile else None,
                        rooted=rooted, flavour=flavour).save()
    keys = trusted_key_lines() if authorized_keys is None else authorized_keys
    (state_dir / TRUSTED_KEYS_FILE).write_text("".join(f"{line}\n" for line in keys))
    clear_faults(state_dir)
    if faults:
        set_faults(state_dir, **faults)
    log_path = state_dir / "device.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_project_root(), env.get("PYTHONPATH")) if p)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "device_agents.virtual",
                                 "--state-dir", str(state_dir)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeviceError(f"virtual device {serial} exited at start: see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise DeviceError(f"virtual device {serial} did not listen on port {port} in 30 s")


def connect_device(server: AdbServer, address: str, timeout_s: float = 30.0) -> None:
    """`adb connect` and wait until the server lists the device as `device`."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            last = server.client(5).connect(address, timeout=5)
        except Exception as exc:  # adbutils raises several kinds here
            last = str(exc)
        states = dict(list_device_states(server))
        if states.get(address) == "device":
            return
        time.sleep(0.2)
    raise DeviceError(f"virtual device {address} not listed as device by adb: {last}")


def lab_up(n: int, base: Path | None = None, own_cpus: bool = True,
           authorize_keys: list[Path] | tuple = (), serial_prefix: str = "VIRT",
           profile: str | Path | None = None, rooted: bool = False,
           flavour: str = "tflite") -> LabState:
    """Start `n` virtual devices behind an adb server of their own.

    With `own_cpus` (the default) each device runs on host cores of its own (see
    `plan_cpu_slices`), as each phone of a real lab has its own CPU; otherwise all devices share
    every host core and their concurrent launches slow each other down. The devices trust the
    user's adb key and the keys in `authorize_keys` (adbkey.pub files). `profile` (a folder, or
    the name of one bench ships) makes them answer as a recorded phone; `rooted` gives them
    `su`; `flavour` is the benchmark_model bench ships them (tflite or litert)."""
    from device_agents.virtual.profile import ProfileError, resolve_profile

    base = base or default_state_dir()
    if n < 1:
        raise UserError(f"--virtual {n}: give a number of devices of at least 1")
    if not re.fullmatch(r"[A-Za-z0-9]{1,12}", serial_prefix):
        raise UserError(f"--serial-prefix {serial_prefix!r}: use 1 to 12 letters or digits")
    if flavour not in ("tflite", "litert"):
        raise UserError(f"--flavour {flavour}: use tflite or litert")
    profile_dir = None
    if profile is not None:
        try:
            profile_dir = resolve_profile(str(profile))
            from device_agents.virtual.profile import DeviceProfile
            DeviceProfile.load(profile_dir).denied  # a bad denied.txt is found before any start
        except ProfileError as exc:
            raise UserError(str(exc)) from None
    for path in authorize_keys:  # bad input is found before anything starts
        _key_lines(Path(path), "--authorize-key")
    existing = LabState.load(base)
    if existing and _alive(existing.adb_pid):
        raise UserError(f"a lab is already up (adb server port {existing.adb_port}); "
                        "run `bench lab down` first")
    base.mkdir(parents=True, exist_ok=True)
    adb_port = free_port()
    adb_proc = start_adb_server(adb_port, base / "adb-server.log")
    lab = LabState(adb_port=adb_port, adb_pid=adb_proc.pid, started_at=time.time())
    lab.save(base)  # saved early so `down` can clean up even if `up` fails half-way
    slices = plan_cpu_slices(n, sorted(os.sched_getaffinity(0))) if own_cpus else [None] * n
    try:
        keys = trusted_key_lines(authorize_keys)  # the user's key exists once adb has started
        for i in range(n):
            port = free_port()
            dev_dir = base / "devices" / f"virtual-{i + 1}"
            proc = start_virtual_device(dev_dir, serial=f"{serial_prefix}{i + 1:04d}", port=port,
                                        host_cpus=slices[i], authorized_keys=keys,
                                        profile=profile_dir, rooted=rooted, flavour=flavour)
            lab.devices.append(VirtualDeviceRecord(f"127.0.0.1:{port}", port, proc.pid,
                                                   str(dev_dir), slices[i]))
            lab.save(base)
        for dev in lab.devices:
            connect_device(lab.server, dev.serial)
    except Exception:
        lab_down(base)
        raise
    return lab


def lab_status(base: Path | None = None) -> dict:
    lab = LabState.load(base or default_state_dir())
    if lab is None:
        return {"up": False, "devices": []}
    try:
        states = dict(list_device_states(lab.server))
    except DeviceError:
        states = {}
    return {
        "up": True,
        "adb_server": lab.server.address,
        "adb_server_alive": _alive(lab.adb_pid),
        "devices": [{"serial": d.serial, "pid": d.pid, "process_alive": _alive(d.pid),
                     "adb_state": states.get(d.serial, "not listed"), "state_dir": d.state_dir,
                     "host_cpus": d.host_cpus}
                    for d in lab.devices],
        "shared_host_cpus": shared_cores({d.serial: d.host_cpus for d in lab.devices}),
    }


def lab_down(base: Path | None = None) -> int:
    """Stop what `lab up` started; returns how many processes were stopped."""
    base = base or default_state_dir()
    lab = LabState.load(base)
    if lab is None:
        return 0
    stopped = 0
    for pid in [d.pid for d in lab.devices] + [lab.adb_pid]:
        stopped += _stop(pid)
    (base / LAB_FILE).unlink(missing_ok=True)
    return stopped


def lab_fault(serial: str, changes: dict | None, clear: bool = False,
              base: Path | None = None) -> dict:
    lab = LabState.load(base or default_state_dir())
    if lab is None:
        raise UserError("no virtual lab is up: run `bench lab up --virtual N` first")
    match = [d for d in lab.devices if serial in (d.serial, Path(d.state_dir).name)]
    if not match:
        raise UserError(f"{serial}: not a device of the virtual lab "
                        f"({', '.join(d.serial for d in lab.devices)})")
    state = Path(match[0].state_dir)
    unknown = set(changes or {}) - set(FAULT_NAMES)
    if unknown:
        raise UserError(f"unknown fault {sorted(unknown)[0]}: use one of {', '.join(FAULT_NAMES)}")
    for name, value in (changes or {}).items():  # all checked before anything is switched
        problem = fault_value_problem(name, value)
        if problem:
            raise UserError(f"{name}={value}: {problem}")
    if clear:
        clear_faults(state)
    faults = set_faults(state, **(changes or {}))
    return faults.active()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _stop(pid: int) -> int:
    if not _alive(pid):
        return 0
    try:
        os.killpg(pid, signal.SIGTERM)  # each process leads its own session/group
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return 1


def recover_server(server: AdbServer, base: Path | None = None) -> bool:
    """Bring back a dead adb server: the virtual lab's is restarted on its port with its devices
    reconnected (and lab.json updated); any other local one gets `adb start-server`.
    Returns True when a restart was attempted."""
    with _RECOVERY_LOCK:  # device threads notice together; one restart serves them all
        try:
            server.client(2).server_version()
            return False
        except Exception:  # unreachable: what follows restarts it
            pass
        return _restart_server(server, base)


_RECOVERY_LOCK = threading.Lock()


def _restart_server(server: AdbServer, base: Path | None) -> bool:
    base = base or default_state_dir()
    lab = LabState.load(base)
    if lab is not None and lab.adb_port == server.port and server.host in ("127.0.0.1", "localhost"):
        proc = start_adb_server(lab.adb_port, base / "adb-server.log")
        lab.adb_pid = proc.pid
        lab.save(base)
        for dev in lab.devices:
            try:
                connect_device(lab.server, dev.serial, timeout_s=10)
            except DeviceError:
                pass  # that device may itself be down; the caller waits for the one it needs
        return True
    if server.host in ("127.0.0.1", "localhost"):
        subprocess.run([adb_path(), "-P", str(server.port), "start-server"],
                       capture_output=True, timeout=30)
        return True
    return False  # a remote lab host's server is its owner's to restart
