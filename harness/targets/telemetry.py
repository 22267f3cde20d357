"""What a device says about itself right now: battery, temperatures, CPU frequencies, CPU topology.

Each reading is ONE adb shell round trip (a compound command whose sections are separated by
marker lines), so a snapshot taken before and after every benchmark launch costs little and its
values belong to the same instant. Every file read is tolerant: real phones lack some zones,
some cores are offline, and a zone's `temp` may fail with EINVAL; a missing value is None or
absent, never an error.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from harness.results.schema import utc_now

from harness.targets.base import Shell
from harness.errors import DeviceError

THERMAL_DIR = "/sys/class/thermal"
CPU_DIR = "/sys/devices/system/cpu"
SECTION_MARK = "@@bench-section "
# Readings outside this range are disabled or broken sensors (e.g. -273000 or 0x7fffffff).
PLAUSIBLE_C = (-40.0, 150.0)


# android.os.Temperature / the thermal HAL's TemperatureType (frameworks/base
# core/java/android/os/Temperature.java; hardware/interfaces thermal 2.0 types.hal and AIDL
# TemperatureType.aidl). BCL_VOLTAGE, BCL_CURRENT and BCL_PERCENTAGE are virtual sensors in mV,
# mA and %, not temperatures; every other type is in °C, and NaN means "not available".
TEMPERATURE_TYPES = {
    -1: "unknown", 0: "cpu", 1: "gpu", 2: "battery", 3: "skin", 4: "usb_port",
    5: "power_amplifier", 6: "bcl_voltage", 7: "bcl_current", 8: "bcl_percentage", 9: "npu",
    10: "tpu", 11: "display", 12: "modem", 13: "soc", 14: "wifi", 15: "camera",
    16: "flashlight", 17: "speaker", 18: "ambient", 19: "pogo",
}
NOT_CELSIUS_TYPES = {6: "mV", 7: "mA", 8: "%"}
TYPE_CPU, TYPE_BATTERY, TYPE_SKIN = 0, 2, 3
# ThermalManagerService starts `Thermal Status` at Integer.MIN_VALUE until the HAL says anything.
_NO_STATUS_YET = -2**31


@dataclass
class HalTemperature:
    """One `Temperature{mValue=.., mType=.., mName=.., mStatus=..}` of `dumpsys thermalservice`."""

    name: str
    type: int
    value: float | None  # °C for temperature types; None for NaN
    status: int          # the sensor's throttling severity, 0 none .. 6 shutdown

    @property
    def kind(self) -> str:
        return TEMPERATURE_TYPES.get(self.type, f"type {self.type}")

    @property
    def is_celsius(self) -> bool:
        return self.type not in NOT_CELSIUS_TYPES


@dataclass
class Telemetry:
    """One snapshot of the device's state.

    Temperatures come from two places: the HAL's, as `dumpsys thermalservice` prints them
    (Android 10+; typed: skin, battery, cpu, ...), and the sysfs thermal zones, which production
    phones often deny to the shell or fill with disabled sensors and raw readings. The gates
    judge `gate_temp_c`, the skin and battery temperature, not the CPU: a phone that has just run
    a benchmark has CPU zones far above its skin's.
    """

    at: str  # UTC ISO time of the reading
    battery_pct: int | None = None
    charging: bool | None = None
    battery_temp_c: float | None = None  # `dumpsys battery` temperature (tenths of °C)
    thermal_status: int | None = None  # `dumpsys thermalservice` "Thermal Status: N" (0 none .. 6)
    zones_c: dict[str, float] = field(default_factory=dict)  # thermal zone type -> °C
    max_temp_c: float | None = None  # the hottest reading of any kind (recorded, not gated)
    cpufreq_khz: dict[int, int] = field(default_factory=dict)  # cpu index -> scaling_cur_freq
    hal_c: dict[str, float] = field(default_factory=dict)  # "skin:skin-therm" -> °C (HAL)
    skin_temp_c: float | None = None  # hottest SKIN sensor of the HAL
    cpu_temp_c: float | None = None   # hottest CPU sensor: the HAL's, else the cpu zones'
    gate_temp_c: float | None = None  # what the temperature gate judges: skin and battery
    gate_source: str | None = None    # where gate_temp_c came from, for the report

    def to_dict(self) -> dict:
        data = asdict(self)
        # JSON object keys are strings; say so here rather than let json.dumps do it silently.
        data["cpufreq_khz"] = {str(cpu): khz for cpu, khz in self.cpufreq_khz.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Telemetry":
        data = {k: v for k, v in dict(data).items() if k in _TELEMETRY_FIELDS}
        data["cpufreq_khz"] = {int(cpu): int(khz) for cpu, khz in data.get("cpufreq_khz", {}).items()}
        data["zones_c"] = dict(data.get("zones_c", {}))
        data["hal_c"] = dict(data.get("hal_c", {}) or {})
        return cls(**data)


@dataclass
class CpuTopology:
    max_freq_khz: dict[int, int]  # cpu index -> cpuinfo_max_freq
    big_cores: list[int]
    mask_hex: str  # taskset mask of the big cores, e.g. "f0"
    source: str = "cpuinfo_max_freq"  # how the big cores were told apart

    @property
    def default_threads(self) -> int:
        """Threads to use when none are asked for: one per big core."""
        return max(1, len(self.big_cores))

    def to_dict(self) -> dict:
        return {"max_freq_khz": {str(c): f for c, f in self.max_freq_khz.items()},
                "big_cores": list(self.big_cores), "mask_hex": self.mask_hex,
                "source": self.source}


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
    match = re.search(r"^\s*Thermal Status:\s*(-?\d+)", dumpsys_thermalservice, flags=re.M)
    if not match or int(match.group(1)) == _NO_STATUS_YET:
        return None
    return int(match.group(1))


_TEMPERATURE_ITEM = re.compile(
    r"Temperature\{mValue=([^,]*), mType=(-?\d+), mName=(.*?), mStatus=(-?\d+)\}")
_HAL_SECTIONS = ("Current temperatures from HAL:", "Cached temperatures:")


def parse_hal_temperatures(dumpsys_thermalservice: str) -> list[HalTemperature]:
    """The HAL's temperatures as it reports them now ("Current temperatures from HAL:"), else
    the service's cache ("Cached temperatures:", which goes stale on HALs without callbacks);
    nothing when the HAL is not ready."""
    lines = dumpsys_thermalservice.splitlines()
    for header in _HAL_SECTIONS:
        try:
            start = next(i for i, line in enumerate(lines) if line.strip() == header)
        except StopIteration:
            continue
        items = []
        for line in lines[start + 1:]:
            if not line[:1].isspace():  # the section's items are indented (a tab)
                break
            match = _TEMPERATURE_ITEM.search(line)
            if match:
                items.append(HalTemperature(match.group(3), int(match.group(2)),
                                            _finite(match.group(1)), int(match.group(4))))
        if items:
            return items
    return []


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


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


# Sysfs zone types that are the skin or the battery, when the HAL does not say (vendors name
# them: "skin-therm", "xo-therm", "quiet-therm", "battery", "battery-therm", "case-therm"). Not
# the battery-current-limit virtual sensors ("vbat", "ibat", "vbatt": mV and mA, not °C).
_SKIN_OR_BATTERY_ZONE = re.compile(r"skin|battery|(?<![vi])batt?(?!ery)|xo[-_]therm|"
                                   r"quiet[-_]therm|case", re.I)
_NOT_A_TEMPERATURE_ZONE = re.compile(r"^(?:[vi]batt?|socd?|bcl|.*bcl.*)$", re.I)
# CPU zones ("cpu-0-0-usr", "cpu0", "cpuss-0", "cluster0", "big", "little", "mid", "tsens_tz_*").
# Not "soc": on Pixels that zone is the battery's state of charge in %.
_CPU_ZONE = re.compile(r"cpu|cluster|^big|^little|^mid|^tsens", re.I)


def parse_telemetry(stdout: str, at: str) -> Telemetry:
    sections = split_sections(stdout)
    battery = sections.get("battery", "")
    battery_pct, battery_temp_c = parse_dumpsys_battery(battery)
    zones_c = parse_zones(sections.get("zones", ""))
    thermalservice = sections.get("thermalservice", "")
    hal = [t for t in parse_hal_temperatures(thermalservice) if t.is_celsius
           and t.value is not None and PLAUSIBLE_C[0] < t.value < PLAUSIBLE_C[1]]
    hal_c = {f"{t.kind}:{t.name}": t.value for t in hal}
    skin = [t.value for t in hal if t.type == TYPE_SKIN]
    hal_battery = [t.value for t in hal if t.type == TYPE_BATTERY]
    cpu = [t.value for t in hal if t.type == TYPE_CPU] or [
        c for name, c in zones_c.items()
        if _CPU_ZONE.search(name) and not _NOT_A_TEMPERATURE_ZONE.match(name)]
    gate_temp_c, gate_source = _gate_temperature(skin, battery_temp_c, hal_battery, zones_c)
    temperatures = list(zones_c.values()) + list(hal_c.values()) + (
        [battery_temp_c] if battery_temp_c is not None else [])
    return Telemetry(
        at=at,
        battery_pct=battery_pct,
        charging=parse_charging(battery),
        battery_temp_c=battery_temp_c,
        thermal_status=parse_thermal_status(thermalservice),
        zones_c=zones_c,
        max_temp_c=max(temperatures) if temperatures else None,
        cpufreq_khz=parse_cpu_files(sections.get("cpufreq", ""), "scaling_cur_freq"),
        hal_c=hal_c,
        skin_temp_c=max(skin) if skin else None,
        cpu_temp_c=max(cpu) if cpu else None,
        gate_temp_c=gate_temp_c,
        gate_source=gate_source,
    )


def _gate_temperature(skin: list[float], battery_c: float | None, hal_battery: list[float],
                      zones_c: dict[str, float]) -> tuple[float | None, str | None]:
    """The skin and battery temperature the gate judges, and which readings it rests on: the
    HAL's skin sensors and the battery (dumpsys battery, else the HAL's battery sensors); without
    either, the sysfs zones named for the skin or the battery."""
    readings, sources = [], []
    if skin:
        readings += skin
        sources.append("HAL skin")
    if battery_c is not None:
        readings.append(battery_c)
        sources.append("dumpsys battery")
    elif hal_battery:
        readings += hal_battery
        sources.append("HAL battery")
    if not readings:
        named = {n: c for n, c in zones_c.items()
                 if _SKIN_OR_BATTERY_ZONE.search(n) and not _NOT_A_TEMPERATURE_ZONE.match(n)}
        if named:
            readings += named.values()
            sources.append("zones " + ", ".join(sorted(named)))
    return (max(readings), " + ".join(sources)) if readings else (None, None)


_TELEMETRY_FIELDS = {f.name for f in fields(Telemetry)}


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
    return CpuTopology(max_freq_khz={}, big_cores=cores, mask_hex=mask_hex(cores),
                       source=f"cpufreq unreadable: all {len(cores)} cores (nproc) count as big")


def parse_dumpsys_battery(text: str) -> tuple[int | None, float | None]:
    level = re.search(r"^\s*level:\s*(\d+)", text, flags=re.M)
    temp = re.search(r"^\s*temperature:\s*(-?\d+)", text, flags=re.M)
    return (int(level.group(1)) if level else None,
            int(temp.group(1)) / 10 if temp else None)
