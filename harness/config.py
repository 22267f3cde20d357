"""Run configuration: defaults, overridden by a TOML file, overridden by command-line flags."""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from harness.benchmark.command import settings_flags
from harness.config_schema import (BENCHMARK_RULES, BINARY_PATH_RULE, HYGIENE_RULES,
                                   LAB_HYGIENE_RULES, RUN_RULES, SECTIONS, Invalid, Rule,
                                   show_key, show_value, tag_name_problem)
from harness.errors import UserError

DEFAULT_CONFIG_FILE = "bench.toml"
# Binaries bench ships itself; other ABIs need a path in config or on the command line
# (no download is ever attempted).
SHIPPED_BINARY_ABIS = ("x86_64",)
KNOWN_ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86")
DEFAULT_ACCURACY_SAMPLES = 50  # `--accuracy-on-device` without a number


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
        """The flags these settings give benchmark_model (written in harness.benchmark.command)."""
        return settings_flags(self)

    def timeout_s(self) -> float:
        # Warm-up and timed phases may each run up to max_secs (plus one run in progress).
        return 2 * self.max_secs + self.startup_allowance_s


@dataclass
class HygieneSettings:
    """Measurement-hygiene thresholds: when a device is fit to measure (harness.targets.hygiene
    waits for it) and when a stored sample counts (harness.regress.compare's gates).

    The one definition of these fields and defaults: [run] and [lab] in bench.toml set them
    (rules: harness.config_schema.HYGIENE_RULES, keyed by these names), and RunConfig carries
    them as `hygiene`."""

    min_battery_pct: int = 20
    max_temp_c: float = 45.0  # skin and battery (Telemetry.gate_temp_c)
    max_cpu_temp_c: float | None = None  # CPU sensors, gated only when set (recorded always)
    max_thermal_status: int = 1  # Android's THROTTLING_LIGHT; above it the SoC is being slowed
    cooldown_deadline_s: float = 300.0
    cooldown_poll_s: float = 5.0  # how often a device that is not fit is read again
    # Not a setting (no rule): room left free on the device after a push.
    storage_margin_bytes: int = 20 * 2**20

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RunConfig:
    devices: str = "all"
    model: str = "digits_cnn"
    variants: list[str] = field(default_factory=list)  # [] : the model's default set
    #                                                     (harness.optimize.variants.default_variants)
    weights: str | None = None        # state dict for a built-in architecture
    input_shape: str | None = None    # e.g. "1,3,224,224" for user models without one
    # Several or token inputs, as --input NAME:DTYPE:SHAPE[:LOW,HIGH] texts (models.inputs).
    inputs: list[str] = field(default_factory=list)
    data_dir: str | None = None       # ImageFolder for accuracy, calibration and fine-tuning
    seed: int = 0
    # Issue 4: repetitions, run dimensions, resilience.
    trials: int = 1
    delegates: list[str] = field(default_factory=list)   # [] : the tool's default
    threads: list[int] = field(default_factory=list)     # [] : one thread per big core
    peak_memory: bool = True         # one extra launch per variant with --report_peak_memory_footprint
    op_profiling: bool = False       # one extra launch per variant with --enable_op_profiling
    # Issue 13: accuracy on the device. Samples of the evaluation split each variant is run on
    # per device and delegate, outputs pulled and judged (0: off; harness.benchmark.device_accuracy).
    accuracy_on_device: int = 0
    accuracy_per_sample: bool = False  # one launch per sample even where a batch would do
    accuracy_min_agreement: float = 0.98  # flagged below this top-1 agreement with the host
    pin_big_cores: bool = True
    pin_governors: bool = True       # rooted devices: `performance` on every core, restored after
    retries: int = 2                 # re-runs of a job whose device dropped
    device_wait_s: float = 60.0      # how long to wait for a dropped device to come back
    quarantine_after: int = 3        # consecutive failed jobs that take a device out of the run
    busy: str = "wait"               # a device locked by another bench: "wait" or "fail"
    # Issue 11: a lab of many hosts. The head's HOST:PORT: devices are those of the lab hosts
    # that joined that Ray cluster (harness.targets.cluster); None: this host's adb servers.
    cluster: str | None = None
    retry_on_sibling: bool = False   # a job lost with its lab host runs again on a phone of
    #                                  the same model on another host (run.retry_lost_on_siblings)
    # Issue 14: `--trials auto`: trials from each key's noise in its last runs (regress/noise.py),
    # within time_budget_s a device (0: no limit).
    auto_trials: bool = False
    time_budget_s: float = 0.0
    # Not a setting (no rule; `bench run --baseline` sets it, --resume restores it).
    # The baseline run whose artifacts are launched beside this run's, paired (pairing.py).
    paired_baseline: str | None = None
    # The [run] keys min_battery_pct, max_temp_c, ... (HYGIENE_RULES); [lab] may override them.
    hygiene: HygieneSettings = field(default_factory=HygieneSettings)
    store_path: Path = Path("reports/bench.db")
    reports_dir: Path = Path("reports")
    remote_dir: str = "/data/local/tmp/bench"
    binaries: dict[str, str] = field(default_factory=dict)  # ABI -> local benchmark_model path
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)
    lab: LabConfig = field(default_factory=lambda: LabConfig())  # the [lab] section

    def effective_hygiene(self) -> HygieneSettings:
        """The thresholds launches are held to: [run]'s, overridden by the lab's ([lab])."""
        overrides = {k: v for k, v in (self.lab.hygiene or {}).items() if k in LAB_HYGIENE_RULES}
        return replace(self.hygiene, **overrides)


def load_config(path: Path | None) -> RunConfig:
    """Config from `path` (or ./bench.toml if present), every key checked against the schema
    (harness.config_schema): a bad value, an unknown key or section is a UserError naming the
    file, section and key."""
    given = path is not None
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).exists():
            return RunConfig()
        path = Path(DEFAULT_CONFIG_FILE)
    return config_from_tables(_read_toml(Path(path), given), str(path))


MAX_CONFIG_BYTES = 1 << 20  # a bench config is a few lines; /dev/zero is not one


def _read_toml(path: Path, given: bool) -> dict:
    option = "--config " if given else ""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise UserError(f"{option}{path}: file not found; give the path of a TOML file") from None
    except IsADirectoryError:
        raise UserError(f"{option}{path}: is a directory; give the path of a TOML file") from None
    except OSError as exc:
        raise UserError(f"{option}{path}: cannot read it ({exc.strerror}); "
                        "give the path of a readable TOML file") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise UserError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB, so not a bench "
                        "config; give the path of a TOML file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                        f"{exc.start}); save it as UTF-8 TOML") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({_one_line(str(exc))}); fix the syntax") from None
    except RecursionError:
        raise UserError(f"{path}: not valid TOML (nested too deeply); fix the syntax") from None


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def config_from_tables(data: dict, source: str) -> RunConfig:
    """A RunConfig from bench.toml's tables ([run], [benchmark], [binaries], [lab])."""
    for name, value in data.items():
        if name not in SECTIONS:
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            if isinstance(value, dict):
                raise UserError(f"{source}: unknown section [{show_key(name)}]; known: {known}"
                                f"{_did_you_mean(name, SECTIONS)}")
            raise UserError(f"{source}: {show_key(name)} = {show_value(value)} at the top "
                            f"level: unknown key; settings go in a section: {known}")
        if not isinstance(value, dict):
            raise UserError(f"{source}: {name} = {show_value(value)}: must be a table "
                            f"([{name}] followed by key = value lines)")
    config = RunConfig()
    _apply_run(config, data.get("run", {}), source)
    _apply(config.benchmark, data.get("benchmark", {}), BENCHMARK_RULES, source, "benchmark")
    config.binaries.update(_parse_binaries(data.get("binaries", {}), source))
    config.lab = parse_lab_section(data.get("lab", {}), source)
    merge_lab_binaries(config.binaries, config.lab, source)
    return config


def config_from_dict(data: dict, source: str = "the stored run config") -> RunConfig:
    """A RunConfig back from `dataclasses.asdict` form (a stored run's config, for --resume),
    checked against the same schema as bench.toml. Keys this version no longer has are ignored.

    The hygiene thresholds are a `hygiene` table; runs stored before that have them as
    top-level keys, as in [run]: both load."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a config table; the run cannot be resumed")
    config = RunConfig()
    _apply_run(config, {k: v for k, v in data.items() if k in RUN_RULES}, source)
    hygiene = _stored_table(data, "hygiene", source)
    _apply_run(config, {k: v for k, v in hygiene.items() if k in HYGIENE_RULES}, source)
    benchmark = _stored_table(data, "benchmark", source)
    _apply(config.benchmark, {k: v for k, v in benchmark.items() if k in BENCHMARK_RULES},
           BENCHMARK_RULES, source, "benchmark")
    config.binaries.update(_parse_binaries(_stored_table(data, "binaries", source), source))
    try:
        config.lab = LabConfig.from_dict(_stored_table(data, "lab", source))
    except (TypeError, AttributeError, ValueError):
        raise UserError(f"{source}: [lab] is not in the form bench stores; "
                        "the run cannot be resumed") from None
    _check_hygiene(config.lab, source)
    if isinstance(data.get("paired_baseline"), str):
        config.paired_baseline = data["paired_baseline"]
    return config


def validate_config(config: RunConfig, source: str = "run config") -> None:
    """Check a RunConfig made in code or changed by command-line flags against the schema,
    and normalize its values (floats for numbers, Path for paths)."""
    _apply_run(config, {key: getattr(_run_target(config, key), key) for key in RUN_RULES}, source)
    _apply(config.benchmark, {key: getattr(config.benchmark, key) for key in BENCHMARK_RULES},
           BENCHMARK_RULES, source, "benchmark")
    _parse_binaries(config.binaries, source)
    _check_hygiene(config.lab, source)


def _stored_table(data: dict, name: str, source: str) -> dict:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise UserError(f"{source}: {name} = {show_value(value)}: must be a table")
    return value


def _apply(target, values: dict, rules: dict[str, Rule], source: str, section: str) -> None:
    for key, value in values.items():
        setattr(target, key, _checked(key, value, rules, source, section))


def _apply_run(config: RunConfig, values: dict, source: str) -> None:
    """[run] keys: RunConfig's own and the hygiene thresholds, each set where it lives."""
    for key, value in values.items():
        setattr(_run_target(config, key), key, _checked(key, value, RUN_RULES, source, "run"))


def _run_target(config: RunConfig, key: str):
    return config.hygiene if key in HYGIENE_RULES else config


def _checked(key, value, rules: dict[str, Rule], source: str, section: str):
    """`value` as its rule normalizes it; a UserError naming the section and key otherwise."""
    rule = rules.get(key)
    if rule is None:
        raise UserError(f"{source}: [{section}] {show_key(key)}: unknown key"
                        f"{_did_you_mean(key, rules)}; known: {', '.join(rules)}")
    try:
        return rule.check(value)
    except Invalid as exc:
        raise UserError(f"{source}: [{section}] {show_key(key)} = {show_value(value)}: "
                        f"{exc}") from None


def _did_you_mean(key, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _parse_binaries(table: dict, source: str) -> dict[str, str]:
    binaries = {}
    for abi, path in table.items():
        if abi not in KNOWN_ABIS:
            raise UserError(f"{source}: [binaries] {show_key(abi)}: unknown ABI; "
                            f"use one of {', '.join(KNOWN_ABIS)}")
        try:
            binaries[abi] = BINARY_PATH_RULE.check(path)
        except Invalid as exc:
            raise UserError(f"{source}: [binaries] {abi} = {show_value(path)}: {exc}") from None
    return binaries


def _check_hygiene(lab: "LabConfig", source: str) -> None:
    for key, value in lab.hygiene.items():
        rule = LAB_HYGIENE_RULES.get(key)
        if rule is None:
            raise UserError(f"{source}: [lab] {show_key(key)}: unknown key; "
                            f"known: {', '.join(LAB_HYGIENE_RULES)}")
        try:
            lab.hygiene[key] = rule.check(value)
        except Invalid as exc:
            raise UserError(f"{source}: [lab] {key} = {show_value(value)}: {exc}") from None


# -- [lab] -------------------------------------------------------------------------------------
# Keys of [lab] itself are measurement-hygiene thresholds (LAB_HYGIENE_RULES), carried as given;
# RunConfig.effective_hygiene lays them over [run]'s.
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
    """A benchmark_model the lab pins for one ABI; with a sha256, any other content is refused.
    A binary `bench binaries fetch` pinned also says where it came from (flavour, version, url,
    size, when), so a missing one can be fetched again and checked against the pin."""

    path: str
    sha256: str | None = None
    flavour: str | None = None     # harness.benchmark.flavours.Flavour value
    version: str | None = None     # as fetched: "latest", "2.2.0", ...
    url: str | None = None
    size_bytes: int | None = None
    fetched_at: str | None = None


# [lab.binaries.ABI] keys besides path and sha256, and the type each must have.
LAB_BINARY_RECORD_KEYS = {"flavour": str, "version": str, "url": str, "size_bytes": int,
                          "fetched_at": str}


@dataclass
class LabConfig:
    servers: list[LabServer] = field(default_factory=list)   # [] : the local default server
    tags: dict[str, list[str]] = field(default_factory=dict)  # serial -> tags
    binaries: dict[str, LabBinary] = field(default_factory=dict)  # ABI -> binary
    hygiene: dict = field(default_factory=dict)  # LAB_HYGIENE_RULES keys the file sets

    @classmethod
    def from_dict(cls, data: dict) -> "LabConfig":
        """Back from `dataclasses.asdict` (a stored run's config, for --resume)."""
        return cls(servers=[LabServer(**s) for s in data.get("servers", [])],
                   tags={k: list(v) for k, v in data.get("tags", {}).items()},
                   binaries={k: LabBinary(**v) for k, v in data.get("binaries", {}).items()},
                   hygiene=dict(data.get("hygiene", {})))

    def tags_of(self, serial: str) -> list[str]:
        return list(self.tags.get(serial, []))

    def pinned_sha256(self) -> dict[str, str]:
        """ABI -> the sha256 its benchmark_model must have."""
        return {abi: b.sha256 for abi, b in self.binaries.items() if b.sha256}


def parse_lab_section(section: dict, path) -> LabConfig:
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
        elif key in LAB_HYGIENE_RULES:
            try:
                lab.hygiene[key] = LAB_HYGIENE_RULES[key].check(value)
            except Invalid as exc:
                raise UserError(f"{path}: [lab] {key} = {show_value(value)}: {exc}") from None
        else:
            known = ", ".join([*LAB_HYGIENE_RULES, *(f"[lab.{t}]" for t in LAB_TABLES)])
            raise UserError(f"{path}: [lab] {show_key(key)}: unknown key"
                            f"{_did_you_mean(key, [*LAB_HYGIENE_RULES, *LAB_TABLES])}; "
                            f"known: {known}")
    return lab


def merge_lab_binaries(binaries: dict[str, str], lab: LabConfig, path) -> None:
    """[lab.binaries] paths join [binaries], so every caller of binaries finds them."""
    for abi, binary in lab.binaries.items():
        if abi in binaries and binaries[abi] != binary.path:
            raise UserError(f"{path}: benchmark_model for {abi} given twice ([binaries] "
                            f"{show_value(binaries[abi])} and [lab.binaries.{abi}] "
                            f"{show_value(binary.path)}); keep one")
        binaries[abi] = binary.path


def _table(value, path, name: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{path}: {name} = {show_value(value)}: must be a table ([{name}])")
    return value


def _parse_lab_servers(table: dict, path) -> list[LabServer]:
    servers, seen = [], {}
    for name, address in table.items():
        where = f"{path}: [lab.servers] {show_key(name)}"
        if not isinstance(address, str):
            raise UserError(f'{where} = {show_value(address)}: expected "host:port", '
                            f'e.g. {show_key(name)} = "10.0.0.5:5037"')
        host, sep, port = address.strip().rpartition(":")
        host = host.strip("[]")  # [::1]:5037
        # isascii: str.isdigit() is also true for digits int() does not take, e.g. "²".
        if not sep or not host or not (port.isascii() and port.isdigit()) \
                or not 0 < int(port) < 65536:
            raise UserError(f'{where} = {show_value(address)}: expected "host:port" with a port '
                            f'1-65535, e.g. "10.0.0.5:5037"')
        if (host, int(port)) in seen:
            raise UserError(f"{where}: same address as {show_key(seen[host, int(port)])} "
                            f"({show_value(address)}); list each adb server once")
        seen[host, int(port)] = name
        servers.append(LabServer(name, host, int(port)))
    return servers


def _parse_lab_tags(table: dict, path) -> dict[str, list[str]]:
    tags = {}
    for serial, names in table.items():
        where = f"{path}: [lab.tags] {show_value(serial)}"
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f'{where} = {show_value(names)}: expected a list of tag names, '
                            f'e.g. {show_value(serial)} = ["big", "pixel"]')
        for name in names:
            # A tag is used as `--devices tag:NAME[,...]`: commas and spaces would split it.
            problem = tag_name_problem(name)
            if problem:
                raise UserError(f"{where}: {problem}")
        tags[serial] = list(dict.fromkeys(names))
    return tags


def _parse_lab_binaries(table: dict, path) -> dict[str, LabBinary]:
    binaries = {}
    for abi, spec in table.items():
        where = f"{path}: [lab.binaries.{show_key(abi)}]"
        if abi not in KNOWN_ABIS:
            raise UserError(f"{where}: unknown ABI; use one of {', '.join(KNOWN_ABIS)}")
        if not isinstance(spec, dict):
            raise UserError(f'{where}: expected a table with path = "..." and sha256 = "..."')
        unknown = set(spec) - {"path", "sha256", *LAB_BINARY_RECORD_KEYS}
        if unknown:
            raise UserError(f"{where} {show_key(sorted(unknown)[0])}: unknown key; "
                            f"known: path, sha256, {', '.join(LAB_BINARY_RECORD_KEYS)}")
        for key, kind in LAB_BINARY_RECORD_KEYS.items():
            value = spec.get(key)
            if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
                raise UserError(f"{where} {key} = {show_value(value)}: must be "
                                f"{'an integer' if kind is int else 'a string'}")
        if not isinstance(spec.get("path"), str) or not spec["path"]:
            raise UserError(f'{where}: path = "..." of the benchmark_model binary is required')
        sha256 = spec.get("sha256")
        if sha256 is not None:
            sha256 = str(sha256).lower() if isinstance(sha256, str) else ""
            if len(sha256) != 64 or not set(sha256) <= _SHA256_HEX:
                raise UserError(f"{where}: sha256 {show_value(spec['sha256'])} is not 64 hex "
                                "digits (as `sha256sum` prints it)")
        binaries[abi] = LabBinary(spec["path"], sha256,
                                  **{k: spec.get(k) for k in LAB_BINARY_RECORD_KEYS})
    return binaries
