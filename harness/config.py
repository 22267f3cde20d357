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
    store_path: Path = Path("reports/bench.db")
    reports_dir: Path = Path("reports")
    remote_dir: str = "/data/local/tmp/bench"
    binaries: dict[str, str] = field(default_factory=dict)  # ABI -> local benchmark_model path
    benchmark: BenchmarkSettings = field(default_factory=BenchmarkSettings)


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
    _apply(config, data.get("run", {}), path, "run", skip=("benchmark", "binaries"))
    _apply(config.benchmark, data.get("benchmark", {}), path, "benchmark")
    binaries = data.get("binaries", {})
    for abi in binaries:
        if abi not in KNOWN_ABIS:
            raise UserError(f"{path}: [binaries] {abi}: unknown ABI; use one of {', '.join(KNOWN_ABIS)}")
    config.binaries.update({k: str(v) for k, v in binaries.items()})
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
