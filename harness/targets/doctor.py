"""`bench doctor [SELECTOR]`: per device, what bench found and what to do about it.

Each check says what was found and how; a red one (blocks a run or spoils its numbers, and
something fixes it) comes with the command that fixes it; a note is something the device lacks
that no command gives it (an old Android, no root) and that a run records as unavailable. The
checks are the same calls a run makes (the binary's probe, the taskset probe, the fixed
performance mode turned on and off again), so what doctor says is what a run will meet.
"""
from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path

from harness.config import RunConfig
from harness.errors import BenchError, DeviceError
from harness.targets.base import ONLINE, Target, TargetFile


class Status(str, Enum):
    OK = "ok"
    NOTE = "note"  # lacking, recorded as unavailable; nothing to fix
    RED = "red"    # fix it: see `fix`

    def __str__(self) -> str:
        return self.value


@dataclass
class Check:
    name: str
    found: str
    status: Status = Status.OK
    fix: str | None = None


@dataclass
class DeviceDoctor:
    serial: str
    device_id: str | None
    model: str | None
    checks: list[Check] = field(default_factory=list)

    @property
    def red(self) -> list[Check]:
        return [c for c in self.checks if c.status is Status.RED]

    def to_dict(self) -> dict:
        return {"serial": self.serial, "device_id": self.device_id, "model": self.model,
                "checks": [{**asdict(c), "status": c.status.value} for c in self.checks]}


# Room a run needs on the device besides its models: the binary and the margin.
BINARY_ROOM_BYTES = 64 << 20


def diagnose(target: Target, config: RunConfig) -> DeviceDoctor:
    """Every check for one device; a device that stops answering midway says so in a check."""
    doctor = DeviceDoctor(target.serial, None, None)
    state = target.state()
    if state != ONLINE:
        doctor.checks.append(Check("adb state", state, Status.RED, _state_fix(target, state)))
        return doctor
    try:
        _diagnose_online(target, config, doctor)
    except DeviceError as exc:
        doctor.checks.append(Check("device", f"stopped answering: {exc}", Status.RED,
                                   f"adb -s {target.serial} reconnect; bench doctor"))
    return doctor


def _state_fix(target: Target, state: str) -> str:
    if state == "unauthorized":
        return ("unlock the phone and accept the `Allow USB debugging?` prompt (tick Always "
                "allow), then: bench doctor")
    if state == "not found":
        return "plug the phone in (USB debugging on in Developer options); `adb devices` lists it"
    return f"adb -s {target.serial} reconnect (or replug it)"


def _diagnose_online(target: Target, config: RunConfig, doctor: DeviceDoctor) -> None:
    from harness.benchmark.binaries import binary_for_abi, shipped_flavour
    from harness.benchmark.fetch import read_record
    from harness.targets.hygiene import free_space, unfit_reasons
    from harness.targets.telemetry import cpu_topology
    from harness.targets.tuning import (State, detect_root, disable_fixed_performance_mode,
                                        enable_fixed_performance_mode, probe_taskset,
                                        read_governors, governors_text)

    info = target.info()
    doctor.device_id, doctor.model = target.identity(), info.model
    add = doctor.checks.append
    lock = _lock_check(target)
    # A device another bench is measuring is only looked at: no push, no perf-mode switch.
    busy = lock.status is Status.RED
    add(Check("model", f"{info.model or '?'} ({info.props.get('ro.product.manufacturer', '?')})"))
    add(Check("ABI", info.abi or "not reported",
              Status.OK if info.abi else Status.RED,
              None if info.abi else "the phone reports no ro.product.cpu.abi: is it Android?"))
    release = info.props.get("ro.build.version.release", "?")
    add(Check("SDK", f"{info.sdk} (Android {release})" if info.sdk else "not reported"))

    hygiene = config.effective_hygiene()
    space = None
    try:
        space = free_space(target, config.remote_dir)
    except DeviceError as exc:
        add(Check("free space", f"unreadable: {exc}", Status.NOTE))
    # The binary: which one a run pushes, and what it says it is.
    try:
        binary = binary_for_abi(info.abi, config.binaries, config.lab.pinned_sha256(),
                                lab_binaries=config.lab.binaries,
                                flavour=shipped_flavour(info.props))
    except BenchError as exc:
        add(Check("benchmark_model", str(exc), Status.RED, _binary_fix(str(exc), info.abi)))
        binary = None
    if binary is not None and busy:
        add(Check("benchmark_model", f"{binary} (not probed: the device is in use)", Status.NOTE))
    elif binary is not None:
        add(_binary_check(target, config, binary, info, doctor.device_id or target.serial,
                          read_record(binary)))

    root, how = detect_root(target)
    add(Check("rooted", f"{root.how or 'no'} ({how})", Status.OK if root.rooted else Status.NOTE,
              None))
    if busy:
        add(Check("perf mode", "not tried: the device is in use", Status.NOTE))
    else:
        state, note = enable_fixed_performance_mode(target, info.sdk)
        if state == State.ON:
            disable_fixed_performance_mode(target)
            add(Check("perf mode", "fixed performance mode available (turned on and off again)"))
        else:
            add(Check("perf mode", f"{state}: {note}", Status.NOTE))

    topology = cpu_topology(target)
    big = ",".join(map(str, topology.big_cores))
    add(Check("big cores", f"cpu {big} (mask {topology.mask_hex}; {topology.source})",
              Status.OK if topology.max_freq_khz else Status.NOTE))
    state, note = probe_taskset(target, topology.mask_hex)
    add(Check("taskset", note, Status.OK if state == State.ON else Status.NOTE))
    governors = read_governors(target)
    add(Check("governor", governors_text(governors) + (
        " (a run pins performance, as root)" if root.rooted and config.pin_governors else ""),
        Status.OK if governors else Status.NOTE))

    telemetry = target.telemetry()
    hal = telemetry.hal_c
    if hal:
        add(Check("thermal (HAL)", f"{len(hal)} sensors, status {telemetry.thermal_status}, skin "
                  f"{_c(telemetry.skin_temp_c)}, cpu {_c(telemetry.cpu_temp_c)}"))
    else:
        add(Check("thermal (HAL)", "no HAL temperatures (Android 10+ has dumpsys thermalservice; "
                  "or the HAL is not ready)", Status.NOTE))
    add(_zones_check(target, telemetry))
    add(Check("battery", f"{telemetry.battery_pct if telemetry.battery_pct is not None else '?'} %,"
              f" {'charging' if telemetry.charging else 'not charging'}, "
              f"{_c(telemetry.battery_temp_c)}"))
    for reason in unfit_reasons(telemetry, hygiene):
        fix = ("plug it into USB power" if reason.startswith("battery") else
               f"let it cool (a run waits up to {hygiene.cooldown_deadline_s:g} s before each launch)")
        add(Check("fit to measure", reason, Status.RED, fix))

    if space is not None:
        needed = BINARY_ROOM_BYTES + hygiene.storage_margin_bytes
        enough = space.free_bytes >= needed
        add(Check("free space", f"{space.free_bytes / 2**20:.0f} MiB on {space.mount}",
                  Status.OK if enough else Status.RED,
                  None if enough else f"free {needed >> 20} MiB on {space.mount} (bench's own "
                  f"files: adb -s {target.serial} shell ls -l {shlex.quote(config.remote_dir)})"))
    add(lock)


def _binary_fix(message: str, abi: str | None) -> str:
    """The command a binary problem needs: fetch one, re-pin one, or fix a path."""
    if "sha256" in message:
        return f"bench binaries fetch --abi {abi} --repin, or put back the pinned binary"
    if "is not a file" in message:
        return "see the message: fetch the pinned binary again, or fix the --binary path"
    return f"bench binaries fetch --abi {abi}" if abi else "check the phone reports its ABI"


def _binary_check(target, config, binary: Path, info, device_id: str, fetched) -> Check:
    from harness.benchmark.binaries import binary_version, file_sha256
    from harness.benchmark.tool import probe_tool
    from harness.benchmark.binaries import remote_binary_path

    sha256 = file_sha256(binary)
    remote = remote_binary_path(config.remote_dir)
    try:
        target.prepare_files([TargetFile(Path(binary), remote, sha256, 0o755)])
    except DeviceError as exc:
        return Check("benchmark_model", f"{binary.name} could not be pushed: {exc}", Status.RED,
                     f"free space on the device, then: bench doctor {target.serial}")
    tool = probe_tool(target, remote, sha256, device_id, version=binary_version(binary))
    if not tool.known:
        return Check("benchmark_model", f"{binary.name} ({sha256[:12]}) does not run here: "
                     f"{tool.note}", Status.RED, f"bench binaries fetch --abi {info.abi}")
    where = f"fetched from {fetched.url}" if fetched else str(binary)
    return Check("benchmark_model", f"{tool.label()}, {len(tool.flags)} flags, sha256 "
                 f"{sha256[:12]} ({where})")


def _zones_check(target, telemetry) -> Check:
    from harness.targets.telemetry import THERMAL_DIR

    listing = target.shell(f"ls -d {THERMAL_DIR}/thermal_zone* 2>/dev/null").stdout.split()
    readable = len(telemetry.zones_c)
    if not listing:
        return Check("thermal zones", "none listed (or the folder is denied)", Status.NOTE)
    status = Status.OK if readable else Status.NOTE
    return Check("thermal zones", f"{readable} of {len(listing)} readable as °C "
                 "(recorded; gated only with max_cpu_temp_c)", status)


def _lock_check(target) -> Check:
    from harness.targets.device_lock import LOCK_DIR, lock_holder

    lease, now = lock_holder(target)
    if lease is None:
        return Check("lock", "free")
    left = max(0, lease.expires_at - now) if now is not None else "?"
    return Check("lock", f"held by {lease.owner.describe()} (lease ends in {left} s)", Status.RED,
                 f"wait for that run, or `bench run --busy wait`; a dead holder's lease runs out "
                 f"by itself ({LOCK_DIR} on the device)")


def _c(value) -> str:
    return f"{value:.1f} °C" if value is not None else "? °C"


def doctor_devices(selector: str, config: RunConfig) -> list[DeviceDoctor]:
    """`bench doctor`: the devices of `selector`, each diagnosed (all at once)."""
    from concurrent.futures import ThreadPoolExecutor

    from harness.run import device_provider

    targets = device_provider(config).select(selector)
    with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
        return list(pool.map(lambda t: diagnose(t, config), targets))
