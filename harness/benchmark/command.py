"""The benchmark_model command line a device runs: written here and nowhere else.

`benchmark_command` puts together the binary, the model, the settings' flags ([benchmark]), the
launch's thread count, its delegate and kind flags and the CPU pinning. Each sample stores the
string it returns (`Measurement.command`), so what a sample was measured with is exactly what
this module wrote.
"""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # harness.config imports this module for BenchmarkSettings.flags()
    from harness.config import BenchmarkSettings

# benchmark_model flags per delegate choice ("cpu" is the plain interpreter, without XNNPACK).
DELEGATE_FLAGS: dict[str, list[str]] = {
    "cpu": ["--use_xnnpack=false"],
    "xnnpack": ["--use_xnnpack=true"],
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
# Flags per job kind: peak memory and op profiling each get a launch of their own, since the
# monitoring and the profiler perturb timings.
KIND_FLAGS: dict[str, list[str]] = {
    "timing": [],
    "peak_memory": ["--report_peak_memory_footprint=true"],
    "op_profile": ["--enable_op_profiling=true"],
    "confirm": [],  # a timing launch of `bench compare --confirm`
}
DELEGATES = tuple(DELEGATE_FLAGS)
KINDS = tuple(KIND_FLAGS)

TOOL_DEFAULT_THREADS = -1  # BenchmarkSettings.num_threads: leave the count to the tool


def settings_flags(settings: BenchmarkSettings, num_threads: int | None = None) -> list[str]:
    """The flags [benchmark] sets, in the order the device receives them; `num_threads` (the
    launch's own count) replaces `settings.num_threads`."""
    threads = settings.num_threads if num_threads is None else num_threads
    flags = [f"--num_runs={settings.num_runs}", f"--warmup_runs={settings.warmup_runs}",
             f"--min_secs={settings.min_secs:g}", f"--max_secs={settings.max_secs:g}",
             f"--warmup_min_secs={settings.warmup_min_secs:g}"]
    if settings.use_xnnpack is not None:  # None: the tool's default (XNNPACK by the runtime)
        flags.append(f"--use_xnnpack={str(settings.use_xnnpack).lower()}")
    return flags + [f"--num_threads={threads}"]


def launch_threads(job_threads: int | None, settings: BenchmarkSettings,
                   big_cores: list[int]) -> int:
    """A launch's thread count: the job's own (`--threads`), else one per big core where the
    settings leave it to the tool (the tool's own default ignores which cores are pinned)."""
    if job_threads is not None:
        return job_threads
    if settings.num_threads == TOOL_DEFAULT_THREADS and big_cores:
        return len(big_cores)
    return settings.num_threads


def pinned(command: str, cpu_mask_hex: str | None) -> str:
    """`command` run on the CPUs of `cpu_mask_hex` (e.g. "f0"); unchanged without a mask."""
    return f"taskset {cpu_mask_hex} {command}" if cpu_mask_hex else command


def benchmark_command(binary_path: str, model_path: str, settings: BenchmarkSettings, *,
                      num_threads: int, kind: str = "timing", delegate: str | None = None,
                      cpu_mask_hex: str | None = None) -> str:
    """The shell command of one launch, as the device's shell receives it.

    `delegate` None: no delegate flag (the tool's default); `cpu_mask_hex` None: not pinned.
    The paths are shell-quoted; the flags are bench's own text and need no quoting.
    """
    words = [shlex.quote(binary_path), shlex.quote(f"--graph={model_path}"),
             *settings_flags(settings, num_threads),
             *DELEGATE_FLAGS.get(delegate, []), *KIND_FLAGS[kind]]
    return pinned(" ".join(words), cpu_mask_hex)
