"""What a device says about itself right now: battery, temperatures, CPU frequencies, CPU topology.

Each reading is ONE adb shell round trip (a compound command whose sections are separated by
marker lines), so a snapshot taken before and after every benchmark launch costs little and its
values belong to the same instant. Every file read is tolerant: real phones lack some zones,
some cores are offline, and a zone's `temp` may fail with EINVAL; a missing value is None or
absent, never an error.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from harness.results.schema import utc_now

from harness.targets.base import Shell
from harness.errors import DeviceError

THERMAL_DIR = "/sys/class/thermal"
CPU_DIR = "/sys/devices/system/cpu"
SECTION_MARK = "@@bench-section "
# Readings outside this range are disabled or broken sensors (e.g. -273000 or 0x7fffffff).
PLAUSIBLE_C = (-40.0, 150.0)


@dataclass
class Telemetry:
    """One snapshot of the device's state."""

    at: str  # UTC ISO time of the reading
    battery_pct: int | None = None
    charging: bool | None = None
    battery_temp_c: float | None = None
    thermal_status: int | None = None  # `dumpsys thermalservice` "Thermal Status: N" (0 none .. 6)
    zones_c: dict[str, float] = field(default_factory=dict)  # thermal zone type -> °C
    max_temp_c: float | None = None
    cpufreq_khz: dict[int, int] = field(default_factory=dict)  # cpu index -> scaling_cur_freq

    def to_dict(self) -> dict:
        data = asdict(self)
        # JSON object keys are strings; say so here rather than let json.dumps do it silently.
        data["cpufreq_khz"] = {str(cpu): khz for cpu, khz in self.cpufreq_khz.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Telemetry":
        data = dict(data)
        data["cpufreq_khz"] = {int(cpu): int(khz) for cpu, khz in data.get("cpufreq_khz", {}).items()}
        data["zones_c"] = dict(data.get("zones_c", {}))
        return cls(**data)


@dataclass
class CpuTopology:
    max_freq_khz: dict[int, int]  # cpu index -> cpuinfo_max_freq
    big_cores: list[int]
    mask_hex: str  # taskset mask of the big cores, e.g. "f0"

    @property
    def default_threads(self) -> int:
        """Threads to use when none are asked for: one per big core."""
        return max(1, len(self.big_cores))

    def to_dict(self) -> dict:
        return {"max_freq_khz": {str(c): f for c, f in self.max_freq_khz.items()},
                "big_cores": list(self.big_cores), "mask_hex": self.mask_hex}


# -- one round trip, several sections -----------------------------------------------------------------
def compound_command(sections: dict[str, str]) -> str:
    """A command line that prints each section's output after a marker line; never fails as a whole."""
    parts = [f"echo '{SECTION_MARK}{name}'; {command}" for name, command in sections.items()]
    return "; ".join(parts) + "; true"


def split_sections(stdout: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(SECTION_MARK):
            current = sections.setdefault(line[len(SECTION_MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def grep_files(pattern_paths: str) -> str:
    # `grep -H . FILES` prints "path:content" for every readable non-empty file in one process:
    # no loop (shells differ), and an unreadable file only costs a line on stderr.
    return f"grep -H . {pattern_paths} 2>/dev/null"


def parse_grep_files(text: str) -> dict[str, str]:
    """"path:value" lines -> {path: value} (the first line of each file)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        path, sep, value = line.partition(":")
        if sep and path not in found:
            found[path] = value.strip()
    return found


# -- parsers -------------------------------------------------------------------------------------------
def parse_charging(dumpsys_battery: str) -> bool | None:
    """Plugged into any power source; without those lines, the battery status (2 charging, 5 full)."""
    powered = re.findall(r"^\s*(?:AC|USB|Wireless|Dock) powered:\s*(true|false)", dumpsys_battery,
                         flags=re.M)
    if powered:
        return "true" in powered
    status = re.search(r"^\s*status:\s*(\d+)", dumpsys_battery, flags=re.M)
    return int(status.group(1)) in (2, 5) if status else None


def parse_thermal_status(dumpsys_thermalservice: str) -> int | None:
    match = re.search(r"^\s*Thermal Status:\s*(\d+)", dumpsys_thermalservice, flags=re.M)
    return int(match.group(1)) if match else None


def zone_celsius(raw: str) -> float | None:
    if not raw.lstrip("-").isdigit():
        return None
    value = int(raw)
    # Zones report millidegrees on most devices, whole degrees on a few.
    celsius = value / 1000 if abs(value) > 200 else float(value)
    return celsius if PLAUSIBLE_C[0] < celsius < PLAUSIBLE_C[1] else None


def parse_zones(grep_output: str) -> dict[str, float]:
    """{zone type: °C} from `grep -H .` over the zones' type and temp files."""
    files = parse_grep_files(grep_output)
    zone_re = re.compile(rf"^{THERMAL_DIR}/(thermal_zone(\d+))/(type|temp)$")
    types: dict[int, str] = {}
    temps: dict[int, float] = {}
    for path, value in files.items():
        match = zone_re.match(path)
        if not match:
            continue
        index = int(match.group(2))
        if match.group(3) == "type":
            types[index] = value
        else:
            celsius = zone_celsius(value)
            if celsius is not None:
                temps[index] = celsius
    zones: dict[str, float] = {}
    for index in sorted(temps):
        name = types.get(index, f"thermal_zone{index}")
        # Several zones may share a type (e.g. two "cpu" zones): keep both, named apart.
        zones[name if name not in zones else f"{name}@thermal_zone{index}"] = temps[index]
    return zones


def parse_cpu_files(grep_output: str, filename: str) -> dict[int, int]:
    """{cpu index: value} from `grep -H .` over /sys/devices/system/cpu/cpu*/cpufreq/<filename>."""
    cpu_re = re.compile(rf"^{CPU_DIR}/cpu(\d+)/cpufreq/{re.escape(filename)}$")
    values: dict[int, int] = {}
    for path, value in parse_grep_files(grep_output).items():
        match = cpu_re.match(path)
        if match and value.isdigit():
            values[int(match.group(1))] = int(value)
    return dict(sorted(values.items()))


# -- readings ------------------------------------------------------------------------------------------
TELEMETRY_SECTIONS = {
    "battery": "dumpsys battery 2>/dev/null",
    "thermalservice": "dumpsys thermalservice 2>/dev/null",
    "zones": grep_files(f"{THERMAL_DIR}/thermal_zone*/type {THERMAL_DIR}/thermal_zone*/temp"),
    "cpufreq": grep_files(f"{CPU_DIR}/cpu[0-9]*/cpufreq/scaling_cur_freq"),
}


def parse_telemetry(stdout: str, at: str) -> Telemetry:
    sections = split_sections(stdout)
    battery = sections.get("battery", "")
    battery_pct, battery_temp_c = parse_dumpsys_battery(battery)
    zones_c = parse_zones(sections.get("zones", ""))
    temperatures = list(zones_c.values()) + ([battery_temp_c] if battery_temp_c is not None else [])
    return Telemetry(
        at=at,
        battery_pct=battery_pct,
        charging=parse_charging(battery),
        battery_temp_c=battery_temp_c,
        thermal_status=parse_thermal_status(sections.get("thermalservice", "")),
        zones_c=zones_c,
        max_temp_c=max(temperatures) if temperatures else None,
        cpufreq_khz=parse_cpu_files(sections.get("cpufreq", ""), "scaling_cur_freq"),
    )


def read_telemetry(session: Shell) -> Telemetry:
    """A snapshot in one shell round trip. Raises DeviceError only when the link fails."""
    at = utc_now()
    result = session.shell(compound_command(TELEMETRY_SECTIONS))
    return parse_telemetry(result.stdout, at)


def big_cores_of(max_freq_khz: dict[int, int]) -> list[int]:
    """The cores with the highest cpuinfo_max_freq (all of them when every core is equal)."""
    if not max_freq_khz:
        return []
    highest = max(max_freq_khz.values())
    return sorted(cpu for cpu, khz in max_freq_khz.items() if khz == highest)


def mask_hex(cpus: list[int]) -> str:
    """taskset's hexadecimal CPU mask, without 0x: [4, 5, 6, 7] -> "f0"."""
    return f"{sum(1 << cpu for cpu in set(cpus)):x}"


def topology_from_max_freqs(max_freq_khz: dict[int, int]) -> CpuTopology:
    big = big_cores_of(max_freq_khz)
    return CpuTopology(max_freq_khz=dict(sorted(max_freq_khz.items())), big_cores=big,
                       mask_hex=mask_hex(big))


def cpu_topology(session: Shell) -> CpuTopology:
    """Each core's cpuinfo_max_freq and the big cores, in one round trip.

    A device without cpufreq files (some emulators) counts all its cores as big, from `nproc`.
    """
    sections = {"max_freq": grep_files(f"{CPU_DIR}/cpu[0-9]*/cpufreq/cpuinfo_max_freq"),
                "nproc": "nproc --all 2>/dev/null || nproc"}
    parsed = split_sections(session.shell(compound_command(sections)).stdout)
    max_freq_khz = parse_cpu_files(parsed.get("max_freq", ""), "cpuinfo_max_freq")
    if max_freq_khz:
        return topology_from_max_freqs(max_freq_khz)
    count = parsed.get("nproc", "").strip()
    if not count.isdigit() or int(count) < 1:
        raise DeviceError(f"{session.serial}: cannot tell its CPU cores (no cpufreq files, no nproc)")
    cores = list(range(int(count)))
    return CpuTopology(max_freq_khz={}, big_cores=cores, mask_hex=mask_hex(cores))


def parse_dumpsys_battery(text: str) -> tuple[int | None, float | None]:
    level = re.search(r"^\s*level:\s*(\d+)", text, flags=re.M)
    temp = re.search(r"^\s*temperature:\s*(-?\d+)", text, flags=re.M)
    return (int(level.group(1)) if level else None,
            int(temp.group(1)) / 10 if temp else None)
