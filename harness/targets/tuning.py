"""How a device is set up for measuring, as a list of operations (pyperf's system tuning), each
applied where the device allows it and undone at the end, and each saying how it went.

Real phones differ in what they let the shell do, and a number is only as good as the
conditions it was measured under, so none of these is a reason to stop a run: what a device
lacks is recorded as unavailable (with why) in `DeviceConditions`, which every sample carries
and the report shows.

- root: `adb root` (the shell is uid 0), else `su`: Magisk's (`su -c CMD`) or AOSP userdebug's
  (`su 0 CMD`); how IREE's benchmark scripts choose between them.
- fixed performance mode: `cmd power set-fixed-performance-mode-enabled true` (Android 11+,
  PowerManagerShellCommand: silent on success; "Unknown command" on Android 10 and older;
  "Failed to set FIXED_PERFORMANCE mode" without the Power HAL AIDL). Android has no way to
  read the mode back (no getter, no line in `dumpsys power`), so it is turned off at the end.
- CPU pinning: `taskset MASK` over the big cores (toybox has taskset since Android 6).
- governors (rooted devices only): `performance` on every core, as mobile-ai-bench's power.sh
  and IREE's set_android_scaling_governor.sh do, and the governors found put back at the end
  (which IREE's scripts do not: they restore a hard-coded `schedutil`).
"""
from __future__ import annotations

import logging
import re
import shlex
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Iterator

from harness.errors import DeviceError
from harness.targets.base import EXIT_NOT_FOUND, CommandTimeout, Shell
from harness.targets.telemetry import CPU_DIR, CpuTopology, grep_files, parse_grep_files

log = logging.getLogger("bench.tuning")

FIXED_PERFORMANCE_COMMAND = "cmd power set-fixed-performance-mode-enabled"
ROOT_PROBE_TIMEOUT_S = 15.0  # Magisk asks the user the first time; a phone nobody answers
PINNED_GOVERNOR = "performance"
GOVERNOR_FILES = f"{CPU_DIR}/cpu[0-9]*/cpufreq/scaling_governor"
_GOVERNOR_PATH = re.compile(rf"^{CPU_DIR}/cpu(\d+)/cpufreq/scaling_governor$")


class State:
    """How an operation went (plain strings: they are stored and shown as they are)."""

    ON = "on"
    OFF = "off"                  # not asked for (config)
    UNAVAILABLE = "unavailable"  # the device cannot (old Android, no tool, no root)
    REFUSED = "refused"          # the device said no


@dataclass
class Root:
    how: str | None  # "adb root" | "su (Magisk)" | "su (AOSP)" | None: not rooted
    prefix: str = ""  # "", "su -c", "su 0 sh -c"

    @property
    def rooted(self) -> bool:
        return self.how is not None

    def command(self, command: str) -> str:
        """`command` as root (the caller checked `rooted`)."""
        return f"{self.prefix} {shlex.quote(command)}" if self.prefix else command


@dataclass
class DeviceConditions:
    """What a device's samples were measured under, and how each was found out."""

    rooted: str = "unknown"           # "no", "adb root", "su (Magisk)", "su (AOSP)"
    perf_mode: str = State.OFF        # State: fixed performance mode
    cpu_mask: str | None = None       # the taskset mask launches run under; None: not pinned
    governor: str | None = None       # e.g. "performance (pinned; was schedutil)", "sched_pixel"
    notes: dict[str, str] = field(default_factory=dict)  # condition -> how / why not
    root: Root = field(default_factory=lambda: Root(None), repr=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("root")
        return data


# -- the operations ------------------------------------------------------------------------------
def detect_root(shell: Shell) -> tuple[Root, str]:
    """How this device gives root, and how that was found out."""
    try:
        uid = shell.shell("id -u", timeout_s=ROOT_PROBE_TIMEOUT_S).stdout.strip()
        if uid == "0":
            return Root("adb root"), "`id -u` is 0: adbd runs as root"
        probe = shell.shell("su -c 'id -u' 2>&1", timeout_s=ROOT_PROBE_TIMEOUT_S)
        if probe.status == EXIT_NOT_FOUND or "not found" in probe.output:
            return Root(None), "no su on the device"
        if probe.stdout.strip().splitlines()[-1:] == ["0"]:
            return Root("su (Magisk)", "su -c"), "`su -c 'id -u'` is 0"
        probe = shell.shell("su 0 id -u 2>&1", timeout_s=ROOT_PROBE_TIMEOUT_S)
        if probe.stdout.strip().splitlines()[-1:] == ["0"]:
            return Root("su (AOSP)", "su 0 sh -c"), "`su 0 id -u` is 0"
        return Root(None), f"su refused: {probe.output.strip()[:120] or 'no output'}"
    except CommandTimeout:
        return Root(None), (f"su did not answer in {ROOT_PROBE_TIMEOUT_S:g} s (grant the shell "
                            "root in Magisk, then run again)")


def enable_fixed_performance_mode(shell: Shell, sdk: int | None) -> tuple[str, str]:
    result = shell.shell(f"{FIXED_PERFORMANCE_COMMAND} true")
    said = " ".join(result.output.split())[:200]
    if result.status == 0 and "Unknown command" not in result.output:
        return State.ON, f"`{FIXED_PERFORMANCE_COMMAND} true` succeeded"
    if "Unknown command" in result.output:
        which = f"Android SDK {sdk}" if sdk else "This Android"
        return State.UNAVAILABLE, (f"{which} has no fixed performance mode (Android 11+): "
                                   f"cmd power said {said!r}")
    if result.status == EXIT_NOT_FOUND:
        return State.UNAVAILABLE, f"no `cmd` on the device: {said}"
    return State.REFUSED, f"cmd power refused (exit {result.status}): {said or 'no output'}"


def disable_fixed_performance_mode(shell: Shell) -> None:
    try:
        shell.shell(f"{FIXED_PERFORMANCE_COMMAND} false")
    except DeviceError as exc:
        # The device may have dropped mid-benchmark; that error is the one to report.
        log.warning("%s: could not turn fixed performance mode off: %s", shell.serial, exc)


def probe_taskset(shell: Shell, mask_hex: str) -> tuple[str, str]:
    """Whether launches can be pinned with `taskset MASK` (the same call a launch makes)."""
    result = shell.shell(f"taskset {mask_hex} true")
    if result.status == 0:
        return State.ON, f"taskset {mask_hex} (big cores by cpuinfo_max_freq)"
    said = " ".join(result.output.split())[:160]
    if result.status == EXIT_NOT_FOUND or "not found" in result.output:
        return State.UNAVAILABLE, f"no taskset (toybox before Android 6): {said}"
    return State.UNAVAILABLE, f"taskset {mask_hex} failed (exit {result.status}): {said}"


def read_governors(shell: Shell) -> dict[int, str]:
    out = shell.shell(grep_files(GOVERNOR_FILES)).stdout
    governors = {}
    for path, value in parse_grep_files(out).items():
        match = _GOVERNOR_PATH.match(path)
        if match and value:
            governors[int(match.group(1))] = value
    return dict(sorted(governors.items()))


def set_governors(shell: Shell, root: Root, governors: dict[int, str]) -> None:
    writes = "; ".join(f"echo {shlex.quote(g)} > {CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor"
                       for cpu, g in governors.items())
    shell.shell(root.command(writes))


def governors_text(governors: dict[int, str]) -> str:
    distinct = sorted(set(governors.values()))
    return ", ".join(distinct) if distinct else "unreadable"


# -- all of them, for a device's share of the run --------------------------------------------------
@contextmanager
def device_tuning(shell: Shell, topology: CpuTopology, *, sdk: int | None,
                  pin_big_cores: bool = True, fixed_performance: bool = True,
                  pin_governors: bool = True) -> Iterator[DeviceConditions]:
    """Apply what the device allows for the block; undo it after. Never raises for what a
    device lacks; a DeviceError (the link) propagates, after undoing what was done."""
    conditions = DeviceConditions()
    undo: list = []
    try:
        root, how = detect_root(shell)
        conditions.root = root
        conditions.rooted = root.how or "no"
        conditions.notes["root"] = how

        conditions.notes["topology"] = topology.source
        if pin_big_cores:
            state, note = probe_taskset(shell, topology.mask_hex)
            conditions.cpu_mask = topology.mask_hex if state == State.ON else None
            conditions.notes["cpu_pinning"] = note
        else:
            conditions.notes["cpu_pinning"] = "off ([run] pin_big_cores = false)"

        if fixed_performance:
            conditions.perf_mode, conditions.notes["perf_mode"] = \
                enable_fixed_performance_mode(shell, sdk)
            if conditions.perf_mode == State.ON:
                undo.append(lambda: disable_fixed_performance_mode(shell))
        else:
            conditions.notes["perf_mode"] = "off (not asked for)"

        found = read_governors(shell)
        conditions.governor = governors_text(found)
        if not found:
            conditions.notes["governor"] = "scaling_governor unreadable"
        elif not pin_governors:
            conditions.notes["governor"] = "left as found ([run] pin_governors = false)"
        elif not root.rooted:
            conditions.notes["governor"] = "left as found (not rooted)"
        else:
            undo.append(lambda: set_governors(shell, root, found))  # before: a write may land
            set_governors(shell, root, {cpu: PINNED_GOVERNOR for cpu in found})
            now = read_governors(shell)
            if now and set(now.values()) == {PINNED_GOVERNOR}:
                conditions.governor = f"{PINNED_GOVERNOR} (pinned; was {governors_text(found)})"
                conditions.notes["governor"] = (f"{PINNED_GOVERNOR} on cpu "
                                                f"{','.join(map(str, now))} as root")
            else:
                conditions.governor = governors_text(now or found)
                conditions.notes["governor"] = (f"writing {PINNED_GOVERNOR} did not take "
                                                f"(now {governors_text(now)})")
        yield conditions
    finally:
        for step in reversed(undo):
            try:
                step()
            except DeviceError as exc:
                log.warning("%s: could not undo a tuning step: %s", shell.serial, exc)
