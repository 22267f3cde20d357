"""Fault switches of one virtual device, kept in ``<state_dir>/faults.json``.

The file is the switchboard: ``bench lab fault`` (or a test) rewrites it while the device runs,
and the device re-reads it (cheaply, by mtime) at every point where a fault can act, so faults
can be switched at start and while running.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

FAULTS_FILE = "faults.json"


@dataclass
class Faults:
    # Connection drop: close the transport after this many pushed bytes (sync SEND DATA) ...
    drop_after_push_bytes: int | None = None
    # ... or this many seconds after a benchmark_model process starts.
    drop_during_benchmark_s: float | None = None
    # After a drop, refuse new connections for this long (None: until the fault is cleared).
    offline_for_s: float | None = None
    # benchmark_model is killed by SIGSEGV this many seconds after it starts (None: no crash).
    benchmark_crash_after_s: float | None = None
    # benchmark_model is stopped (SIGSTOP) after it starts and never finishes.
    benchmark_hang: bool = False
    # Reported temperature of every thermal zone / battery, in degrees Celsius (None: normal).
    temperature_c: float | None = None
    # Reported battery level in percent (None: normal, 85 %).
    battery_level: int | None = None
    # Storage quota for /data and /sdcard in bytes (None: host free space).
    storage_quota_bytes: int | None = None
    # Whether the battery is charging (None: normal, plugged into USB and charging; False:
    # unplugged and discharging, as a phone that fell off its lab hub).
    charging: bool | None = None
    # A launch that writes outputs (benchmark_model --output_filepath, bench's accuracy on the
    # device) goes wrong: "short" (its output file cut to half), "missing" (no output file) or
    # "crash" (SIGSEGV while it runs) ...
    output_fault: str | None = None
    # ... on the N-th such launch since the faults were last switched (1: the first; 0: every).
    output_fault_launch: int = 1

    def active(self) -> dict:
        """The switches that differ from the defaults."""
        default = Faults()
        return {k: v for k, v in asdict(self).items() if getattr(default, k) != v}


FAULT_NAMES = tuple(f.name for f in fields(Faults))
OUTPUT_FAULTS = ("short", "missing", "crash")  # the values of Faults.output_fault


def fault_value_problem(name: str, value) -> str | None:
    """Why `value` is no value for the fault `name` (None: it is one)."""
    if value is None:
        return None
    if name == "output_fault":
        return None if value in OUTPUT_FAULTS else f"use one of {', '.join(OUTPUT_FAULTS)}"
    if isinstance(value, str):
        return "use a number, true/false or none"
    return None


def load_faults(state_dir: Path) -> Faults:
    path = Path(state_dir) / FAULTS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Faults()
    return Faults(**{k: v for k, v in data.items() if k in FAULT_NAMES})


def save_faults(state_dir: Path, faults: Faults) -> None:
    path = Path(state_dir) / FAULTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(faults), indent=1))
    os.replace(tmp, path)  # atomic: the device never reads half a file


def set_faults(state_dir: Path, **changes) -> Faults:
    """Switch faults on or off for a running (or not yet started) device; returns the new set."""
    unknown = set(changes) - set(FAULT_NAMES)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULT_NAMES)}")
    faults = load_faults(state_dir)
    for key, value in changes.items():
        setattr(faults, key, value)
    save_faults(state_dir, faults)
    return faults


def clear_faults(state_dir: Path) -> None:
    save_faults(state_dir, Faults())


class FaultWatcher:
    """Re-reads faults.json only when its mtime changed."""

    def __init__(self, state_dir: Path):
        self._path = Path(state_dir) / FAULTS_FILE
        self._state_dir = Path(state_dir)
        self._mtime: int | None = None
        self._faults = Faults()
        self._output_launches = 0  # launches writing outputs since the faults last changed

    def current(self) -> Faults:
        try:
            mtime = self._path.stat().st_mtime_ns
        except FileNotFoundError:
            self._mtime, self._faults = None, Faults()
            return self._faults
        if mtime != self._mtime:
            self._faults = load_faults(self._state_dir)
            self._mtime = mtime
            self._output_launches = 0
        return self._faults

    def output_fault_now(self) -> str | None:
        """The output fault that hits the launch starting now (one that writes outputs), or None."""
        faults = self.current()
        if faults.output_fault is None:
            return None
        self._output_launches += 1
        wanted = faults.output_fault_launch
        return faults.output_fault if wanted in (0, self._output_launches) else None
