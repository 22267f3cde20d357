"""Run configuration: defaults, overridden by a TOML file, overridden by command-line flags."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from harness.errors import UserError

DEFAULT_CONFIG_FILE = "bench.toml"
# Binaries bench ships itself; other ABIs need a path in config or on the command line
# (no download is ever attempted).
SHIPPED_BINARY_ABIS = ("x86_64",)
KNOWN_ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")


@dataclass
class BenchmarkSettings:
    """benchmark_model flags bench sets (names as the tool's flags)."""

    num_runs: int = 50
    warmup_runs: int = 1
    min_secs: float = 1.0
    max_secs: float = 150.0
    warmup_min_secs: float = 0.5
    num_threads: int = -1
    use_xnnpack: bool | None = None  # None: the tool's default (XNNPACK applied by the runtime)
    # Room for process start, model load and delegate set-up on top of the two timed phases.
    startup_allowance_s: float = 60.0

    def flags(self) -> list[str]:
        out = [f"--num_runs={self.num_runs}", f"--warmup_runs={self.warmup_runs}",
               f"--min_secs={self.min_secs:g}", f"--max_secs={self.max_secs:g}",
               f"--warmup_min_secs={self.warmup_min_secs:g}",
               f"--num_threads={self.num_threads}"]
        if self.use_xnnpack is not None:
            out.append(f"--use_xnnpack={str(self.use_xnnpack).lower()}")
        return out

    def timeout_s(self) -> float:
        # Warm-up and timed phases may each run up to max_secs (plus one run in progress).
        return 2 * self.max_secs + self.startup_allowance_s


@dataclass
class RunConfig:
    devices: str = "all"
    model: str = "digits_cnn"
    variants: list[str] = field(default_factory=lambda: ["baseline"])
    weights: str | None = None        # state dict for a built-in architecture
    input_shape: str | None = None    # e.g. "1,3,224,224" for user models without one
    data_dir: str | None = None       # ImageFolder for accuracy, calibration and fine-tuning
    seed: int = 0
    # Issue 4: repetitions, run dimensions, resilience.
    trials: int = 1
    delegates: list[str] = field(default_factory=list)   # [] : the tool's default
    threads: list[int] = field(default_factory=list)     # [] : one thread per big core
    peak_memory: bool = True         # one extra launch per variant with --report_peak_memory_footprint
    op_profiling: bool = False       # one extra launch per variant with --enable_op_profiling
    pin_big_cores: bool = True
    retries: int = 2                 # re-runs of a job whose device dropped
    device_wait_s: float = 60.0      # how long to wait for a dropped device to come back
    quarantine_after: int = 3        # consecutive failed jobs that take a device out of the run
    busy: str = "wait"               # a device locked by another bench: "wait" or "fail"
    min_battery_pct: int = 20
    max_temp_c: float = 45.0
    max_thermal_status: int = 1
    cooldown_deadline_s: float = 300.0
    cooldown_poll_s: float = 5.0
    store_path: Path = Path("reports/bench.db")
    reports_dir: Path = Path("reports")
    remote_dir: str = "/data/local/tmp/bench"
    binaries: dict[str, str] = field(default_factory=dict)  # ABI -> local benchmark_model path
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    lab: LabConfig = field(default_factory=lambda: LabConfig())  # the [lab] section


def load_config(path: Path | None) -> RunConfig:
    """Config from `path` (or ./bench.toml if present); unknown keys are errors, not ignored."""
    config = RunConfig()
    if path is None:
        default = Path(DEFAULT_CONFIG_FILE)
        if not default.exists():
            return config
        path = default
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"--config {path}: file not found; give the path of a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    _apply(config, data.get("run", {}), path, "run", skip=("benchmark", "binaries", "lab"))
    _apply(config.benchmark, data.get("benchmark", {}), path, "benchmark")
    binaries = data.get("binaries", {})
    for abi in binaries:
        if abi not in KNOWN_ABIS:
            raise UserError(f"{path}: [binaries] {abi}: unknown ABI; use one of {', '.join(KNOWN_ABIS)}")
    config.binaries.update({k: str(v) for k, v in binaries.items()})
    config.lab = parse_lab_section(data.get("lab", {}), path)
    merge_lab_binaries(config.binaries, config.lab, path)
    unknown = set(data) - {"run", "benchmark", "binaries", "lab"}
    if unknown:
        raise UserError(f"{path}: unknown section [{sorted(unknown)[0]}]; "
                        "known: [run], [benchmark], [binaries], [lab]")
    return config


def _apply(target, values: dict, path: Path, section: str, skip: tuple = ()) -> None:
    known = {f.name: f for f in fields(target) if f.name not in skip}
    for key, value in values.items():
        if key not in known:
            raise UserError(f"{path}: [{section}] {key}: unknown key; known: {', '.join(known)}")
        current = getattr(target, key)
        if isinstance(current, Path):
            value = Path(value)
        setattr(target, key, value)


# -- [lab] -------------------------------------------------------------------------------------
# Measurement-hygiene thresholds a lab may set; carried as given, consumers apply the defaults.
LAB_HYGIENE_KEYS = {"min_battery_pct": int, "max_temp_c": float, "max_thermal_status": int,
                    "cooldown_deadline_s": float}
LAB_TABLES = ("servers", "tags", "binaries")
_SHA256_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class LabServer:
    """An adb server of the lab: `name` is how devices lists and reports refer to it."""

    name: str
    host: str
    port: int


@dataclass(frozen=True)
class LabBinary:
    """A benchmark_model the lab pins for one ABI; with a sha256, any other content is refused."""

    path: str
    sha256: str | None = None


@dataclass
class LabConfig:
    servers: list[LabServer] = field(default_factory=list)   # [] : the local default server
    tags: dict[str, list[str]] = field(default_factory=dict)  # serial -> tags
    binaries: dict[str, LabBinary] = field(default_factory=dict)  # ABI -> binary
    hygiene: dict = field(default_factory=dict)  # LAB_HYGIENE_KEYS that the file sets

    @classmethod
    def from_dict(cls, data: dict) -> "LabConfig":
        """Back from `dataclasses.asdict` (a stored run's config, for --resume)."""
        return cls(servers=[LabServer(**s) for s in data.get("servers", [])],
                   tags={k: list(v) for k, v in data.get("tags", {}).items()},
                   binaries={k: LabBinary(**v) for k, v in data.get("binaries", {}).items()},
                   hygiene=dict(data.get("hygiene", {})))

    def adb_servers(self):
        """The configured servers as AdbServer (imported here: config stays free of adbutils)."""
        from harness.devices.session import AdbServer

        return [AdbServer(s.host, s.port, name=s.name) for s in self.servers]

    def tags_of(self, serial: str) -> list[str]:
        return list(self.tags.get(serial, []))

    def pinned_sha256(self) -> dict[str, str]:
        """ABI -> the sha256 its benchmark_model must have."""
        return {abi: b.sha256 for abi, b in self.binaries.items() if b.sha256}


def parse_lab_section(section: dict, path: Path) -> LabConfig:
    """[lab]: thresholds as keys, and the [lab.servers], [lab.tags], [lab.binaries.ABI] tables."""
    if not isinstance(section, dict):
        raise UserError(f"{path}: lab must be a table ([lab])")
    lab = LabConfig()
    for key, value in section.items():
        if key == "servers":
            lab.servers = _parse_lab_servers(_table(value, path, "lab.servers"), path)
        elif key == "tags":
            lab.tags = _parse_lab_tags(_table(value, path, "lab.tags"), path)
        elif key == "binaries":
            lab.binaries = _parse_lab_binaries(_table(value, path, "lab.binaries"), path)
        elif key in LAB_HYGIENE_KEYS:
            kind = LAB_HYGIENE_KEYS[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or (kind is int and not isinstance(value, int)):
                raise UserError(f"{path}: [lab] {key} = {value!r}: expected a number"
                                f"{' (whole)' if kind is int else ''}")
            lab.hygiene[key] = kind(value)
        else:
            known = ", ".join([*LAB_HYGIENE_KEYS, *(f"[lab.{t}]" for t in LAB_TABLES)])
            raise UserError(f"{path}: [lab] {key}: unknown key; known: {known}")
    return lab


def merge_lab_binaries(binaries: dict[str, str], lab: LabConfig, path: Path) -> None:
    """[lab.binaries] paths join [binaries], so every caller of binaries finds them."""
    for abi, binary in lab.binaries.items():
        if abi in binaries and binaries[abi] != binary.path:
            raise UserError(f"{path}: benchmark_model for {abi} given twice ([binaries] "
                            f"{binaries[abi]} and [lab.binaries.{abi}] {binary.path}); keep one")
        binaries[abi] = binary.path


def _table(value, path: Path, name: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{path}: {name} must be a table ([{name}])")
    return value


def _parse_lab_servers(table: dict, path: Path) -> list[LabServer]:
    servers, seen = [], {}
    for name, address in table.items():
        where = f"{path}: [lab.servers] {name}"
        if not isinstance(address, str):
            raise UserError(f'{where}: expected "host:port", e.g. {name} = "10.0.0.5:5037"')
        host, sep, port = address.strip().rpartition(":")
        host = host.strip("[]")  # [::1]:5037
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError(f'{where} = "{address}": expected "host:port" with a port 1-65535, '
                            f'e.g. "10.0.0.5:5037"')
        if (host, int(port)) in seen:
            raise UserError(f"{where}: same address as {seen[host, int(port)]} ({address}); "
                            "list each adb server once")
        seen[host, int(port)] = name
        servers.append(LabServer(name, host, int(port)))
    return servers


def _parse_lab_tags(table: dict, path: Path) -> dict[str, list[str]]:
    tags = {}
    for serial, names in table.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f'{path}: [lab.tags] "{serial}": expected a list of tag names, '
                            f'e.g. "{serial}" = ["big", "pixel"]')
        for name in names:
            # A tag is used as `--devices tag:NAME[,...]`: commas and spaces would split it.
            if not name or any(c in name for c in ", \t:"):
                raise UserError(f'{path}: [lab.tags] "{serial}": tag {name!r} must be non-empty '
                                "without commas, colons or spaces")
        tags[serial] = list(dict.fromkeys(names))
    return tags


def _parse_lab_binaries(table: dict, path: Path) -> dict[str, LabBinary]:
    binaries = {}
    for abi, spec in table.items():
        where = f"{path}: [lab.binaries.{abi}]"
        if abi not in KNOWN_ABIS:
            raise UserError(f"{where}: unknown ABI; use one of {', '.join(KNOWN_ABIS)}")
        if not isinstance(spec, dict):
            raise UserError(f'{where}: expected a table with path = "..." and sha256 = "..."')
        unknown = set(spec) - {"path", "sha256"}
        if unknown:
            raise UserError(f"{where} {sorted(unknown)[0]}: unknown key; known: path, sha256")
        if not isinstance(spec.get("path"), str) or not spec["path"]:
            raise UserError(f'{where}: path = "..." of the benchmark_model binary is required')
        sha256 = spec.get("sha256")
        if sha256 is not None:
            sha256 = str(sha256).lower()
            if len(sha256) != 64 or not set(sha256) <= _SHA256_HEX:
                raise UserError(f"{where}: sha256 {spec['sha256']!r} is not 64 hex digits "
                                "(as `sha256sum` prints it)")
        binaries[abi] = LabBinary(spec["path"], sha256)
    return binaries
