"""The benchmark_model command line a device runs: written here and nowhere else.

`benchmark_command` puts together the binary, the model, the settings' flags ([benchmark]), the
launch's thread count, its delegate and kind flags and the CPU pinning. Each sample stores the
string it returns (`Measurement.command`), so what a sample was measured with is exactly what
this module wrote.
"""
from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from harness.benchmark.flavours import Flavour

if TYPE_CHECKING:  # harness.config imports this module for BenchmarkSettings.flags()
    from harness.benchmark.tool import ToolInfo
    from harness.config import BenchmarkSettings

# benchmark_model flags per delegate choice and flavour (harness.benchmark.tool). Classic:
# "cpu" is the plain interpreter without XNNPACK; the delegate providers' flags. LiteRT: no
# delegate providers, accelerators instead; its CPU accelerator is XNNPACK, and `--use_gpu=true`
# keeps the CPU as fallback (as LiteRT CLI runs it).
DELEGATE_FLAGS: dict[Flavour, dict[str, list[str]]] = {
    Flavour.TFLITE: {
        "cpu": ["--use_xnnpack=false"],
        "xnnpack": ["--use_xnnpack=true"],
        # XNNPACK with TFLITE_XNNPACK_DELEGATE_FLAG_FORCE_FP16 (xnnpack_delegate_provider.cc
        # applies it only with the explicit delegate); fails where the CPU has no fp16 path.
        "xnnpack-fp16": ["--use_xnnpack=true", "--xnnpack_force_fp16=true"],
        "gpu": ["--use_gpu=true"],
        "nnapi": ["--use_nnapi=true"],
    },
    Flavour.LITERT: {
        "xnnpack": ["--use_cpu=true"],
        "gpu": ["--use_gpu=true"],
        "npu": ["--use_npu=true"],
    },
}
# Why a flavour has no way to do a delegate choice at all.
NO_SUCH_DELEGATE = {
    (Flavour.LITERT, "cpu"): "LiteRT's CPU accelerator always runs XNNPACK (no plain "
                             "interpreter); use --delegate xnnpack",
    (Flavour.LITERT, "nnapi"): "LiteRT has no NNAPI accelerator (NPUs: --delegate npu)",
    (Flavour.TFLITE, "npu"): "the classic tool reaches NPUs only through NNAPI "
                             "(--delegate nnapi) or a vendor's external delegate",
    (Flavour.LITERT, "xnnpack-fp16"): "LiteRT's benchmark_model has no flag to force fp16 on "
                                      "its CPU accelerator",
}
# Flags per job kind: peak memory and op profiling each get a launch of their own, since the
# monitoring and the profiler perturb timings.
KIND_FLAGS: dict[Flavour, dict[str, list[str]]] = {
    Flavour.TFLITE: {
        "timing": [],
        "peak_memory": ["--report_peak_memory_footprint=true"],
        "op_profile": ["--enable_op_profiling=true"],
        "accuracy": [],  # its sample flags are per launch (device_accuracy.sample_flags)
        "confirm": [],  # a timing launch of `bench compare --confirm`
        "paired": [],   # a timing launch of the baseline's artifact (harness.benchmark.pairing)
    },
    Flavour.LITERT: {
        "timing": [],
        "peak_memory": ["--report_peak_memory_footprint=true"],
        "op_profile": ["--use_profiler=true"],
        "accuracy": [],
        "confirm": [],
        "paired": [],
    },
}
# The flags an accuracy launch needs: real inputs in, the last invocation's outputs out
# (BenchmarkTfLiteModel's; LiteRT's CompiledModel tool has none of them).
ACCURACY_FLAGS = ("input_layer", "input_layer_shape", "input_layer_value_files",
                  "output_filepath")
DELEGATES = ("cpu", "xnnpack", "xnnpack-fp16", "gpu", "nnapi", "npu")
KINDS = tuple(KIND_FLAGS[Flavour.TFLITE])


def flavour_of(tool: "ToolInfo | None") -> Flavour:
    """The tool's flavour; the classic one when it is not known (bench's behaviour before it
    learnt flavours, and what a binary that does not answer `--help` most likely is)."""
    if tool is not None and tool.known:
        return Flavour(tool.flavour)
    return Flavour.TFLITE


def _flag_name(flag: str) -> str:
    return flag[2:].split("=", 1)[0]


def unavailable_reason(tool: "ToolInfo | None", delegate: str | None, kind: str,
                       settings: "BenchmarkSettings | None" = None) -> str | None:
    """Why this binary cannot do the launch (a delegate, a kind or a [benchmark] setting it has
    no flag for), or None. A flag the binary lacks is never passed: the tool would warn and
    measure something else. (Settings that only tune the timing loop, such as
    --warmup_min_secs on an old build, are left to the tool's default: `dropped_settings`.)"""
    flavour = flavour_of(tool)
    if (settings is not None and settings.use_xnnpack is not None and tool is not None
            and tool.known and not tool.has("use_xnnpack")):
        return (f"[benchmark] use_xnnpack = {str(settings.use_xnnpack).lower()}: this "
                f"benchmark_model ({tool.label()}) has no --use_xnnpack; leave it unset")
    flags = [] if delegate is None else DELEGATE_FLAGS[flavour].get(delegate)
    if flags is None:
        return f"--delegate {delegate}: {NO_SUCH_DELEGATE.get((flavour, delegate), 'not supported')}"
    for flag in flags + KIND_FLAGS[flavour][kind]:
        if tool is not None and tool.known and not tool.has(_flag_name(flag)):
            what = f"--delegate {delegate}" if flag in flags else f"the {kind} launch"
            return f"{what}: this benchmark_model ({tool.label()}) has no --{_flag_name(flag)}"
    if kind == "accuracy" and tool is not None and tool.known:
        missing = [f"--{name}" for name in ACCURACY_FLAGS if not tool.has(name)]
        if missing:
            return (f"accuracy on the device: this benchmark_model ({tool.label()}) has no "
                    f"{', '.join(missing)}, so it cannot read samples or write its outputs")
    return None


def input_layer_flags(inputs: list[dict] | None, tool: "ToolInfo | None" = None) -> list[str]:
    """What a model of integer inputs is fed: `--input_layer`, `--input_layer_shape` and
    `--input_layer_value_range` (token ids within the vocabulary, masks all ones: the full
    sequence). Nothing for float models, whose random [-0.5, 0.5] inputs time the same maths,
    nor for a tool without these flags (LiteRT's), which then draws ids from [0, 99].

    `inputs`: the artifact's metadata["inputs"] (name, dtype, shape, value_range), in its order."""
    integer = [i for i in inputs or () if i["dtype"].startswith(("int", "uint"))]
    if not integer:
        return []
    if flavour_of(tool) is Flavour.LITERT or (tool is not None and tool.known and not all(
            tool.has(name) for name in ("input_layer", "input_layer_shape", "input_layer_value_range"))):
        return []
    ranges = []
    for spec in integer:
        is_mask = "mask" in spec.get("source_name", spec["name"]).lower()
        low, high = spec.get("value_range") or ((1, 1) if is_mask else (None, None))
        if low is not None:
            ranges.append(f"{spec['name']},{low},{high}")
    flags = [f"--input_layer={','.join(i['name'] for i in inputs)}",
             f"--input_layer_shape={':'.join(','.join(map(str, i['shape'])) for i in inputs)}"]
    return flags + ([f"--input_layer_value_range={':'.join(ranges)}"] if ranges else [])


TOOL_DEFAULT_THREADS = -1  # BenchmarkSettings.num_threads: leave the count to the tool


def dropped_settings(settings: BenchmarkSettings, tool: "ToolInfo | None") -> list[str]:
    """The [benchmark] flags this binary lacks, which a launch leaves out (said once per device)."""
    if tool is None or not tool.known:
        return []
    return [f for f in settings_flags(settings) if not tool.has(_flag_name(f))
            and _flag_name(f) != "use_xnnpack"]


def settings_flags(settings: BenchmarkSettings, num_threads: int | None = None,
                   tool: "ToolInfo | None" = None) -> list[str]:
    """The flags [benchmark] sets, in the order the device receives them; `num_threads` (the
    launch's own count) replaces `settings.num_threads`. With a probed `tool`, only the flags
    it has (an old build may lack --warmup_min_secs; LiteRT has no --use_xnnpack)."""
    threads = settings.num_threads if num_threads is None else num_threads
    flags = [f"--num_runs={settings.num_runs}", f"--warmup_runs={settings.warmup_runs}",
             f"--min_secs={settings.min_secs:g}", f"--max_secs={settings.max_secs:g}",
             f"--warmup_min_secs={settings.warmup_min_secs:g}"]
    if settings.use_xnnpack is not None:  # None: the tool's default (XNNPACK by the runtime)
        flags.append(f"--use_xnnpack={str(settings.use_xnnpack).lower()}")
    flags.append(f"--num_threads={threads}")
    if tool is not None and tool.known:
        flags = [f for f in flags if tool.has(_flag_name(f))]
    return flags


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


def accuracy_settings(settings: BenchmarkSettings) -> BenchmarkSettings:
    """An accuracy launch invokes once, with no warm-up: its outputs are what it is for."""
    from dataclasses import replace

    return replace(settings, num_runs=1, warmup_runs=0, min_secs=0.0, warmup_min_secs=0.0)


def benchmark_command(binary_path: str, model_path: str, settings: BenchmarkSettings, *,
                      num_threads: int, kind: str = "timing", delegate: str | None = None,
                      cpu_mask_hex: str | None = None, tool: "ToolInfo | None" = None,
                      extra_flags: list[str] | None = None) -> str:
    """The shell command of one launch, as the device's shell receives it, in the flags of the
    `tool`'s flavour (the classic tool's when it is not known; check `unavailable_reason` first).

    `delegate` None: no delegate flag (the tool's default); `cpu_mask_hex` None: not pinned.
    The paths are shell-quoted; the flags are bench's own text and need no quoting.
    """
    flavour = flavour_of(tool)
    if kind == "accuracy":
        settings = accuracy_settings(settings)
    words = [shlex.quote(binary_path), shlex.quote(f"--graph={model_path}"),
             *settings_flags(settings, num_threads, tool),
             *DELEGATE_FLAGS[flavour].get(delegate, []), *KIND_FLAGS[flavour][kind],
             *(shlex.quote(flag) for flag in extra_flags or [])]
    return pinned(" ".join(words), cpu_mask_hex)
