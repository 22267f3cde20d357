"""Measurement hygiene for one device: is it fit to measure, is there room, and how to pin it.

Before a benchmark the device must have battery (or be charging), be cool (zone temperatures and
Android's thermal status under thresholds) and have room for the artifacts. A hot or drained
device is polled until it is back to normal, up to a deadline; after that the caller records
the measurement as invalid with `Readiness.reason` instead of running it on a throttled phone.
"""
from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from typing import Callable

from harness.benchmark.command import pinned
# The thresholds are config: defined once, in harness.config (importable from here too).
from harness.config import HygieneSettings
from harness.targets.base import Shell
from harness.targets.telemetry import CpuTopology, Telemetry, read_telemetry
from harness.errors import DeviceError

log = logging.getLogger("bench.hygiene")

@dataclass
class Readiness:
    ok: bool
    reason: str | None  # why the device is not fit to measure (None when ok)
    waited_s: float
    before: Telemetry  # the first reading
    after: Telemetry  # the reading the verdict rests on

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "waited_s": round(self.waited_s, 3),
                "before": self.before.to_dict(), "after": self.after.to_dict()}


def unfit_reasons(telemetry: Telemetry, settings: HygieneSettings) -> list[str]:
    """What keeps the device from being measured now; empty when it is fit.

    A value the device does not report (None) is not held against it: an emulator or a board
    without a battery must still be measurable.
    """
    reasons = []
    if telemetry.gate_temp_c is not None and telemetry.gate_temp_c > settings.max_temp_c:
        reasons.append(f"device hot: {telemetry.gate_temp_c:.1f} °C > {settings.max_temp_c:.1f} °C"
                       f" ({telemetry.gate_source})")
    if (settings.max_cpu_temp_c is not None and telemetry.cpu_temp_c is not None
            and telemetry.cpu_temp_c > settings.max_cpu_temp_c):
        reasons.append(f"CPU hot: {telemetry.cpu_temp_c:.1f} °C > {settings.max_cpu_temp_c:.1f} °C")
    if telemetry.thermal_status is not None and telemetry.thermal_status > settings.max_thermal_status:
        reasons.append(f"thermal status {telemetry.thermal_status} > {settings.max_thermal_status}")
    if (telemetry.battery_pct is not None and telemetry.battery_pct < settings.min_battery_pct
            and telemetry.charging is not True):
        reasons.append(f"battery {telemetry.battery_pct} % < {settings.min_battery_pct} % "
                       "and not charging")
    return reasons


def wait_until_ready(session: Shell, settings: HygieneSettings, *,
                     sleep: Callable[[float], None] = time.sleep,
                     first_reading: Telemetry | None = None) -> Readiness:
    """Poll every cooldown_poll_s until the device is fit, up to cooldown_deadline_s.

    `first_reading`: a snapshot the caller just took (the previous launch's after-telemetry),
    used instead of reading the device again.

    The deadline holds on both the wall clock and the sum of the sleeps, so an injected `sleep`
    (a test, an event loop) ends the wait after as many polls as a real one would.
    """
    started = time.monotonic()
    slept_s = 0.0
    before = after = first_reading or read_telemetry(session)
    reasons = unfit_reasons(after, settings)
    while reasons:
        waited_s = max(time.monotonic() - started, slept_s)
        if waited_s >= settings.cooldown_deadline_s:
            reason = "; ".join(reasons) + f" after {seconds_text(waited_s)} s cooldown"
            log.warning("%s: not ready: %s", session.serial, reason)
            return Readiness(False, reason, waited_s, before, after)
        pause_s = min(settings.cooldown_poll_s, settings.cooldown_deadline_s - waited_s)
        sleep(pause_s)
        slept_s += pause_s
        after = read_telemetry(session)
        reasons = unfit_reasons(after, settings)
    waited_s = max(time.monotonic() - started, slept_s) if after is not before else 0.0
    return Readiness(True, None, waited_s, before, after)


def seconds_text(seconds: float) -> str:
    """300 -> "300", 0.5 -> "0.5": whole seconds unless that would round a short wait away."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}".rstrip("0").rstrip(".")


# -- storage -----------------------------------------------------------------------------------------
@dataclass
class FreeSpace:
    free_bytes: int
    mount: str  # where the space is, e.g. /data


def free_space(session: Shell, remote_dir: str) -> FreeSpace:
    """Free space of the filesystem that holds remote_dir (or its nearest existing parent).

    Every candidate goes into one `df` call: df skips a missing folder with an error line, and
    the deepest existing one comes last.
    """
    parts = [p for p in remote_dir.rstrip("/").split("/") if p]
    candidates = ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)] or ["/"]
    result = session.shell("df -k " + " ".join(shlex.quote(c) for c in candidates) + " 2>/dev/null")
    rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
    rows = [r for r in rows if len(r) >= 6 and r[3].isdigit()]
    if not rows:
        raise DeviceError(f"{session.serial}: cannot read free space of {remote_dir}: "
                          f"{result.output.strip()[:200]}")
    # "Mounted on" is the last column; a mount point with a space would span several.
    return FreeSpace(free_bytes=int(rows[-1][3]) * 1024, mount=" ".join(rows[-1][5:]))


def check_storage(session: Shell, remote_dir: str, needed_bytes: int,
                  settings: HygieneSettings) -> None:
    """Raise DeviceError when remote_dir's filesystem lacks needed_bytes + margin (call before pushing)."""
    space = free_space(session, remote_dir)
    margin = settings.storage_margin_bytes
    if space.free_bytes < needed_bytes + margin:
        raise DeviceError(
            f"{session.serial}: storage full: {remote_dir} needs {needed_bytes} bytes + "
            f"{margin} margin, device has {space.free_bytes} free on {space.mount}")


# -- pinning (performance mode, governors and the taskset probe: harness.targets.tuning) --------
def pinned_command(command: str, topology: CpuTopology) -> str:
    """`command` run on the big cores only."""
    return pinned(command, topology.mask_hex)
