"""The virtual device's filesystem: a folder on the host that holds the device's ``/``.

Every device path goes through :meth:`Sandbox.host_path`, which refuses anything that would
resolve outside the sandbox, so nothing the device does is ever written outside it.
"""
from __future__ import annotations

import functools
import json
import os
import posixpath
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from device_agents.virtual.cpus import CpuSlice
from device_agents.virtual.profile import REPLACED_TREES, DeviceProfile, is_denied

DEVICE_FILE = "device.json"
# Writable areas that count against the storage quota (as /data and /sdcard on a phone).
QUOTA_ROOTS = ("/data", "/sdcard")
# The mode bits a sandbox file may carry on the host: no setuid, setgid or sticky bit, so that no
# file the device makes lets another local user run code as the lab's user.
HOST_MODE_BITS = 0o777
# Trees only root may write on a phone (the shell user gets EACCES; /system is read-only).
ROOT_ONLY_TREES = ("/sys", "/proc", "/system", "/vendor", "/dev")
WRITABLE_DEVICES = ("/dev/null",)


@dataclass
class VirtualDeviceConfig:
    """What a virtual device is; written to ``<state_dir>/device.json`` by ``bench lab up``."""

    serial: str
    port: int
    state_dir: str
    model: str = "bench Virtual x86_64 host-CPU"
    product: str = "bench_virtual_x86_64"
    device: str = "virtual_x86_64"
    sdk: int = 34
    release: str = "14"
    board_platform: str = "virtual"
    extra_props: dict = field(default_factory=dict)
    # Host cores the device runs on (device core i = host_cpus[i]); None: all of the host's.
    host_cpus: list[int] | None = None
    # A recorded phone the device answers as (device_agents.virtual.profile); None: its own.
    profile_dir: str | None = None
    # `su` is there (a rooted phone): bench may pin governors and frequencies.
    rooted: bool = False
    # Which benchmark_model bench ships for this device: "tflite" (classic) or "litert".
    flavour: str = "tflite"

    def profile(self) -> DeviceProfile | None:
        return _load_profile(self.profile_dir) if self.profile_dir else None

    def cpu_slice(self) -> CpuSlice:
        profile = self.profile()
        return CpuSlice.of(self.host_cpus, device_count=profile.cpu_count() if profile else None)

    def props(self) -> dict[str, str]:
        profile = self.profile()
        props = self._own_props()
        if profile is not None:
            props.update(profile.props)
        props.update({k: str(v) for k, v in self.extra_props.items()})
        # Whatever the profile says: this device's own identity, and what its numbers are.
        props["ro.serialno"] = self.serial
        props["bench.virtual.measures"] = "host-cpu"
        props["bench.virtual.host_cpus"] = ",".join(str(c) for c in
                                                    CpuSlice.of(self.host_cpus).host_cpus)
        props["bench.virtual.flavour"] = self.flavour
        if profile is not None:
            props["bench.virtual.profile"] = profile.name
        return props

    def _own_props(self) -> dict[str, str]:
        return {
            "ro.product.cpu.abi": "x86_64",
            "ro.product.cpu.abilist": "x86_64",
            "ro.product.cpu.abilist64": "x86_64",
            "ro.build.version.sdk": str(self.sdk),
            "ro.build.version.release": self.release,
            "ro.build.type": "userdebug",
            "ro.build.fingerprint": f"bench/{self.product}/{self.device}:{self.release}/VIRTUAL/1:userdebug/dev-keys",
            "ro.product.model": self.model,
            "ro.product.name": self.product,
            "ro.product.device": self.device,
            "ro.product.manufacturer": "bench",
            "ro.product.brand": "bench",
            "ro.board.platform": self.board_platform,
            "ro.hardware": "virtual",
            "ro.serialno": self.serial,
            "ro.kernel.qemu": "0",
            # As a user-facing phone: adbd asks every host to authenticate (adb_auth.py).
            "ro.adb.secure": "1",
        }

    def save(self) -> None:
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.state_dir) / DEVICE_FILE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, state_dir: Path) -> "VirtualDeviceConfig":
        return cls(**json.loads((Path(state_dir) / DEVICE_FILE).read_text()))


@functools.lru_cache(maxsize=8)
def _load_profile(path: str) -> DeviceProfile:
    return DeviceProfile.load(path)  # read once per device process: a profile does not change


class SandboxEscape(PermissionError):
    pass


class Sandbox:
    def __init__(self, state_dir: Path, profile: DeviceProfile | None = None):
        self.state_dir = Path(state_dir).resolve()
        self.root = self.state_dir / "fs"
        self.profile = profile
        self.denied = profile.denied if profile is not None else ()
        self._applied_temperature: object = _NOT_APPLIED

    # -- paths -------------------------------------------------------------------------------
    def host_path(self, device_path: str, cwd: str = "/") -> Path:
        """Host path of a device path (absolute, or relative to ``cwd``); never outside root."""
        if not device_path.startswith("/"):
            device_path = posixpath.join(cwd, device_path)
        normal = posixpath.normpath(device_path)
        if normal.startswith("//"):
            normal = normal[1:]
        host = self.root / normal.lstrip("/")
        # Resolve symlinks too: a link inside the sandbox must not point out of it.
        resolved = host.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise SandboxEscape(f"{device_path}: Permission denied")
        if self.denied and is_denied(self.device_path(resolved), self.denied):
            # SELinux on a production phone: the shell user may not touch it.
            raise PermissionError(f"{device_path}: Permission denied")
        return host

    def writable_path(self, device_path: str, cwd: str = "/", root: bool = False) -> Path:
        """host_path of a file about to be written: the system trees are root's alone."""
        host = self.host_path(device_path, cwd)
        normal = self.device_path(host)
        if not root and normal not in WRITABLE_DEVICES and any(
                normal == t or normal.startswith(t + "/") for t in ROOT_ONLY_TREES):
            raise PermissionError(f"{device_path}: Permission denied")
        return host

    def device_path(self, host_path: Path) -> str:
        rel = Path(host_path).resolve().relative_to(self.root)
        return "/" + rel.as_posix() if str(rel) != "." else "/"

    # -- storage -----------------------------------------------------------------------------
    def used_bytes(self) -> int:
        total = 0
        for top in QUOTA_ROOTS:
            base = self.root / top.lstrip("/")
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    try:
                        total += os.lstat(os.path.join(dirpath, name)).st_size
                    except OSError:
                        pass
        return total

    def free_bytes(self, quota_bytes: int | None) -> int:
        host_free = shutil.disk_usage(self.root).free
        if quota_bytes is None:
            return host_free
        return max(0, min(host_free, quota_bytes - self.used_bytes()))

    def size_bytes(self, quota_bytes: int | None) -> int:
        if quota_bytes is None:
            return shutil.disk_usage(self.root).total
        return quota_bytes

    # -- layout ------------------------------------------------------------------------------
    def create_layout(self, config: VirtualDeviceConfig) -> None:
        """Make the Android folders and the read-only system files the device serves."""
        for d in ("data/local/tmp", "sdcard", "system/bin", "proc", "dev", "vendor"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        profile = self.profile
        for tree in REPLACED_TREES:  # a reused state dir: no tree of another profile or none
            shutil.rmtree(self.root / tree, ignore_errors=True)
        if profile is None or not profile.replaces("sys/devices/system/cpu"):
            self._write_cpu_files(config.cpu_slice())
        if profile is None or not profile.replaces("sys/class/thermal"):
            self._write_thermal_files(temperature_c=None)
        if profile is not None:
            for device_path, source in profile.fs_files():
                target = self.root / device_path.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        (self.root / "system" / "build.prop").write_text(
            "".join(f"{k}={v}\n" for k, v in config.props().items())
        )

    def _write_cpu_files(self, cpus: CpuSlice) -> None:
        # The device runs on host cores, so it reports those cores' frequencies as its own.
        ncpu = cpus.count
        host_cpuinfo = Path("/proc/cpuinfo")
        cpuinfo = host_cpuinfo.read_text() if host_cpuinfo.exists() else ""
        (self.root / "proc" / "cpuinfo").write_text(_cpuinfo_of_slice(cpuinfo, cpus))
        mhz = _host_mhz(cpuinfo)
        cpu_root = self.root / "sys/devices/system/cpu"
        for stale in cpu_root.glob("cpu[0-9]*"):  # a reused state dir may have had more cores
            if stale.name[3:].isdigit() and int(stale.name[3:]) >= ncpu:
                shutil.rmtree(stale)
        for i, host_cpu in enumerate(cpus.host_cpus):
            freq_dir = cpu_root / f"cpu{i}" / "cpufreq"
            freq_dir.mkdir(parents=True, exist_ok=True)
            host_freq = Path(f"/sys/devices/system/cpu/cpu{host_cpu}/cpufreq")
            for name in ("cpuinfo_max_freq", "cpuinfo_min_freq", "scaling_cur_freq",
                         "scaling_max_freq", "scaling_min_freq"):
                value = None
                try:
                    value = (host_freq / name).read_text().strip()
                except OSError:
                    pass
                if not value:
                    value = str(mhz * 1000)
                (freq_dir / name).write_text(value + "\n")
            (freq_dir / "scaling_governor").write_text("schedutil\n")
        (cpu_root / "possible").write_text(f"0-{ncpu - 1}\n")
        (cpu_root / "online").write_text(f"0-{ncpu - 1}\n")

    THERMAL_ZONES = ("cpu-0-0-usr", "battery", "skin-therm")

    def _write_thermal_files(self, temperature_c: float | None) -> None:
        base = self.root / "sys/class/thermal"
        for i, kind in enumerate(self.THERMAL_ZONES):
            zone = base / f"thermal_zone{i}"
            zone.mkdir(parents=True, exist_ok=True)
            (zone / "type").write_text(kind + "\n")
            celsius = temperature_c if temperature_c is not None else _normal_temperature(kind)
            (zone / "temp").write_text(f"{int(round(celsius * 1000))}\n")

    def apply_temperature(self, temperature_c: float | None) -> None:
        """Make the thermal zone files say the (faulted or normal) temperature."""
        self._applied_temperature = temperature_c
        if self.profile is None or not self.profile.replaces("sys/class/thermal"):
            self._write_thermal_files(temperature_c)
            return
        # A recorded phone's zones: a fault sets every zone that reads as a temperature; no
        # fault puts the recorded readings back.
        for device_path, source in self.profile.fs_files():
            if not (device_path.startswith("/sys/class/thermal/") and device_path.endswith("/temp")):
                continue
            target = self.root / device_path.lstrip("/")
            recorded = source.read_text(errors="replace")
            text = recorded
            if temperature_c is not None and _reads_as_millidegrees(recorded):
                text = f"{int(round(temperature_c * 1000))}\n"
            target.write_text(text)

    def ensure_temperature(self, temperature_c: float | None) -> None:
        """apply_temperature, only when the wanted value differs from the last one applied."""
        if self._applied_temperature is _NOT_APPLIED or self._applied_temperature != temperature_c:
            self.apply_temperature(temperature_c)


_NOT_APPLIED = object()


def _reads_as_millidegrees(text: str) -> bool:
    value = text.strip()
    return value.lstrip("-").isdigit() and 1000 <= abs(int(value)) < 150_000


def _cpuinfo_of_slice(cpuinfo: str, cpus: CpuSlice) -> str:
    """/proc/cpuinfo with only the slice's processors, numbered as the device numbers them."""
    blocks = [b for b in cpuinfo.split("\n\n") if b.strip()]
    by_host: dict[int, str] = {}
    for block in blocks:
        first = block.strip().splitlines()[0]
        key, _sep, value = first.partition(":")
        if key.strip() == "processor" and value.strip().isdigit():
            by_host[int(value)] = block.strip()
    if not by_host:
        return cpuinfo
    kept = []
    for device_cpu, host_cpu in enumerate(cpus.host_cpus):
        if host_cpu in by_host:
            lines = by_host[host_cpu].splitlines()
            lines[0] = f"processor\t: {device_cpu}"
            kept.append("\n".join(lines))
    return "".join(block + "\n\n" for block in kept)


def _normal_temperature(kind: str) -> float:
    return {"battery": 29.0, "skin-therm": 31.0}.get(kind, 35.0)


def _host_mhz(cpuinfo: str) -> int:
    for line in cpuinfo.splitlines():
        if line.lower().startswith("cpu mhz"):
            try:
                return int(float(line.split(":", 1)[1]))
            except ValueError:
                break
    return 2000
