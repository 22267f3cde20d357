"""LiteRT's CompiledModel benchmark tool (`litert/tools:benchmark_model`, class
BenchmarkLiteRtModel, as of LiteRT v2.2.0), run with LiteRT's own CompiledModel Python API on the
host CPU. Sources: google-ai-edge/LiteRT `litert/tools/benchmark_litert_model.{h,cc}`,
`benchmark_litert_model_main.cc`, `tflite/tools/benchmark/benchmark_model.cc`,
`tflite/tools/command_line_flags.cc` (see ../shared/reference/benchmark_model.md).

    INFO: STARTING!  -> flags (BenchmarkModel's core flags + the tool's own) -> core param echo
    -> Init (LITERT_LOG: Loading model from: ...; the runtime's own lines) -> warmup and timed
    phases (the core's `count=` lines, µs, stdout) -> the BENCHMARK RESULTS block (ms, stderr)

What differs from the classic tool, as the real one does: no delegate provider flags (an
unknown flag such as --use_xnnpack=true is only warned about: `WARN: Unconsumed cmdline
flags`), no `--help` flag (usage only when `--help` is the first argument left; then exit 0, as
from v2.1.6), no `Graph:` echo, no `Inference timings in us:` line. Accelerators are asked of the
real runtime: the virtual device has no GPU and no NPU, so `--use_gpu=true` fails as LiteRT
fails where no GPU can be had, and `--use_npu=true` falls back to the CPU as LiteRT does. The
build has no NPU vendor flag modules, so its `--help` lists none under "NPU Vendor Flags".

Lines the runtime prints that name host files (its own library paths) are left out: the
device must not give its host away. The BENCHMARK RESULTS lines carry the `[file:line]` of the
v2.2.0 source as pasted from real runs (mlcommons/mobile_app_open#1134: 92 .. 135); the few not
seen in a paste (the header, "Peak memory", the closing rule) use the lines around them.
"""
import os
import sys

from device_agents.benchmark_model import log
from device_agents.benchmark_model.device_paths import PathEscapeError, host_path
from device_agents.benchmark_model.flags import (CORE_SPECS, FlagSpec, Params, cpp_double,
                                                 cpp_stream, parse_flags, specs_of, usage_text)
from device_agents.benchmark_model.main import (BenchmarkFailed, run_main, run_settings,
                                                validate_core)
from device_agents.benchmark_model.memory import PeakMemoryMonitor, max_rss_kb
from device_agents.benchmark_model.runner import now_us, run_phase

HEADER_FILE = "benchmark_litert_model.h"
SOURCE_FILE = "benchmark_litert_model.cc"


def _own(name, kind, default, usage) -> FlagSpec:
    return FlagSpec(name, kind, default, None, usage)  # the tool does not echo its own params


# BenchmarkLiteRtModel::GetFlags() of v2.2.0, in registration order (after the core flags).
LITERT_SPECS = [
    _own("graph", "str", "", "The path to the model file."),
    _own("signature_to_run_for", "str", "", "The signature to run for."),
    _own("use_cpu", "bool", True, "Whether to use CPU accelerator."),
    _own("use_gpu", "bool", False, "Whether to use GPU accelerator."),
    _own("use_npu", "bool", False, "Whether to use NPU accelerator."),
    _own("dispatch_library_path", "str", "", "Dispatch library path."),
    _own("compiler_plugin_library_path", "str", "",
         "Compiler plugin library path. Only for JIT compilation."),
    _own("compiler_cache_path", "str", "",
         "Compiler plugin cache path, used to store JIT-compiled models."),
    _own("require_full_delegation", "bool", False, "Whether to require full delegation."),
    _own("use_profiler", "bool", False, "Whether to use profiler."),
    _own("enable_perfetto", "bool", False, "Whether to enable perfetto tracing."),
    _own("gpu_backend", "str", "", "GPU backend to use when using GPU accelerator."),
    _own("gpu-precision", "str", "auto", "GPU precision option [auto|fp16|fp32]."),
    _own("gpu_low_priority", "bool", False, "Whether to use low priority for GPU accelerator."),
    _own("result_file_path", "str", "", "Path to save the benchmark result in binary proto format."),
    _own("model_runtime_info_output_file", "str", "",
         "Path to save the model runtime info in binary proto format."),
    _own("mediatek_nerun_pilot_version", "str", "version8",
         "Which version of the MediaTek NPU SDK to use."),
    _own("input_layer_value_range", "str", "",
         "A map-like string representing value range for *integer* and *float* input layers. "
         "Each item is separated by ':', and the item value consists of input layer name and "
         "integer-only range values (both low and high are inclusive) separated by ',', e.g. "
         "input1,1.0,2.0:input2,0,254"),
    _own("enable_weight_sharing", "bool", False,
         "Whether to enable weight (constant tensor) sharing."),
    _own("convert_weights_on_gpu", "bool", False, "Whether to convert weights on the GPU."),
    _own("xnnpack_weight_cache_file_path", "str", "",
         "Path to an XNNPACK packed-weight cache file. Use ':memory' for an in-memory cache on "
         "supported builds."),
]
GROUPS = [CORE_SPECS, LITERT_SPECS]
SPECS = specs_of(GROUPS)


def litert_log(severity: str, line: int, message: str, source: str = HEADER_FILE) -> None:
    """LITERT_LOG: `SEVERITY: [file:line] message`, always on stderr."""
    sys.stdout.flush()
    sys.stderr.write(f"{severity}: [{source}:{line}] {message}\n")
    sys.stderr.flush()


# The model's host path -> its device path, in the runtime's messages (set once Init starts).
_PATHS: dict[str, str] = {}


def _host_free(lines: list[str]) -> list[str]:
    """The runtime's own lines as the device shows them: the model's host path put back as its
    device path, and lines that name other files of the host (the runtime's libraries) left out."""
    host_marks = {sys.prefix, os.path.dirname(os.__file__), "site-packages"}
    out = []
    for line in lines:
        for host, device in _PATHS.items():
            line = line.replace(host, device)
        if not any(mark and mark in line for mark in host_marks):
            out.append(line)
    return out


def _echo_core_params(params: Params) -> None:
    """BenchmarkModel::LogParams (the tool adds none of its own)."""
    verbose = bool(params["verbose"])
    log.info(f"Log parameter values verbosely: [{cpp_stream(verbose)}]")
    for spec in CORE_SPECS:
        if spec.label and (verbose or params.was_set(spec.name)):
            log.info(f"{spec.label}: [{cpp_stream(params[spec.name])}]")


def _parse(argv: list[str]) -> Params | None:
    parsed = parse_flags(argv, SPECS)
    for message in parsed.errors:
        log.error(message)
    if parsed.errors:
        log.error(usage_text(argv[0] if argv else "benchmark_model", GROUPS))
        raise BenchmarkFailed()
    if parsed.help_requested:
        log.error(usage_text(argv[0] if argv else "benchmark_model", GROUPS))
        sys.stdout.write("\n  NPU Vendor Flags from LiteRT:\n")
        sys.stdout.flush()
        return None  # v2.1.6+: help is not a failure
    if parsed.unconsumed:
        log.warn("Unconsumed cmdline flags: " + " ".join(parsed.unconsumed))
    return parsed.params


class _Session:
    """A CompiledModel with its signature's input and output buffers, filled with random data."""

    def __init__(self, params: Params, host_graph: str):
        try:
            self._open(params, host_graph)
        except BenchmarkFailed:
            raise
        except Exception as exc:  # what the runtime refused (odd dtypes, dynamic shapes, ...)
            for line in _host_free(str(exc).splitlines() or [type(exc).__name__]):
                if line.strip():
                    log.raw_stderr(f"ERROR: {line.strip()}")
            raise BenchmarkFailed() from None

    def _open(self, params: Params, host_graph: str) -> None:
        import numpy as np
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.environment import Environment
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.options import CpuOptions, Options

        from device_agents.benchmark_model.native_stderr import capture_native_stderr

        accelerators = 0
        if params["use_npu"]:
            accelerators |= HardwareAccelerator.NPU
        if params["use_gpu"]:
            accelerators |= HardwareAccelerator.GPU
        if params["use_cpu"] or not params["require_full_delegation"]:
            accelerators |= HardwareAccelerator.CPU
        cpu_options = CpuOptions(num_threads=params["num_threads"]) if params["num_threads"] > 0 \
            else CpuOptions()
        failure = None
        with capture_native_stderr() as captured:
            try:
                environment = Environment.create()
                self.model = CompiledModel.from_file(
                    host_graph, environment=environment,
                    options=Options(hardware_accelerators=HardwareAccelerator(accelerators),
                                    cpu_options=cpu_options))
            except Exception as exc:  # the runtime's own error report
                failure = str(exc)
        for line in _host_free(captured.lines):
            log.raw_stderr(line)
        if failure is not None:
            for line in _host_free(failure.splitlines()):
                if line.strip():
                    log.raw_stderr(line)
            raise BenchmarkFailed()
        signatures = self.model.get_signature_list()
        key = params["signature_to_run_for"] or (next(iter(signatures)) if signatures else "")
        if key not in signatures:
            litert_log("ERROR", 231, f"Signature {key} not found in the model.", SOURCE_FILE)
            raise BenchmarkFailed()
        self.signature = key
        rng = np.random.default_rng()
        self.inputs = {}
        self.values = {}  # the random inputs by name (the profiler replays them)
        self.input_bytes = 0
        ranges = _value_ranges(params["input_layer_value_range"])
        for name, detail in self.model.get_input_tensor_details(key).items():
            buffer = self.model.create_input_buffer_by_name(key, name)
            dtype = np.dtype(detail.get("dtype", "float32"))
            shape = detail.get("shape", [1])
            low, high = ranges.get(name, (-1.0, 1.0) if dtype.kind == "f" else (0, 99))
            if dtype.kind == "f":
                value = rng.uniform(low, high, size=shape).astype(dtype)
            elif dtype == np.bool_:
                value = rng.integers(0, 2, size=shape).astype(np.bool_)
            else:
                value = rng.integers(int(low), int(high) + 1, size=shape).astype(dtype)
            buffer.write(value)
            self.inputs[name] = buffer
            self.values[name] = value
            self.input_bytes += value.nbytes
        self.outputs = {name: self.model.create_output_buffer_by_name(key, name)
                        for name in self.model.get_output_tensor_details(key)}

    def invoke(self) -> None:
        self.model.run_by_name(self.signature, self.inputs, self.outputs)

    def reset_inputs(self) -> None:
        pass  # the input buffers keep their data between runs


def _value_ranges(text: str) -> dict[str, tuple[float, float]]:
    ranges = {}
    for item in filter(None, text.split(":")):
        parts = item.split(",")
        if len(parts) == 3:
            try:
                ranges[parts[0]] = (float(parts[1]), float(parts[2]))
            except ValueError:
                continue
    return ranges


def _results_block(signature, init_us, warmup, inference, input_bytes, init_kb, overall_kb,
                   peak_mb) -> None:
    """BenchmarkLoggingListener::OnBenchmarkEnd (benchmark_litert_model.h)."""
    litert_log("INFO", 89, "\n========== BENCHMARK RESULTS ==========")
    litert_log("INFO", 92, f"Signature name:       {signature}")
    litert_log("INFO", 94, f"Model initialization: {init_us / 1000.0:.2f} ms")
    litert_log("INFO", 96, f"Warmup (first):       {warmup.first / 1000.0:.2f} ms")
    litert_log("INFO", 98, f"Warmup (avg):         {warmup.avg() / 1000.0:.2f} ms "
                           f"({warmup.count} runs)")
    litert_log("INFO", 100, f"Inference (avg):      {inference.avg() / 1000.0:.2f} ms "
                            f"({inference.count} runs)")
    if inference.count > 0:
        litert_log("INFO", 104, f"Inference (min):      {inference.min / 1000.0:.2f} ms")
        litert_log("INFO", 106, f"Inference (max):      {inference.max / 1000.0:.2f} ms")
        litert_log("INFO", 108, f"Inference (std):      {inference.std_deviation() / 1000.0:.2f}")
    else:
        litert_log("INFO", 110, "No inference runs were performed.")
    total_us = inference.sum
    throughput = (input_bytes * inference.count * 1e6 / total_us / (1024.0 * 1024.0)
                  if total_us else 0.0)
    if throughput > 0:
        litert_log("INFO", 115, f"Throughput:           {throughput:.2f} MB/s")
    else:
        litert_log("INFO", 117, "No throughput data available (throughput <= 0).")
    litert_log("INFO", 124, "\nMemory Usage:")
    litert_log("INFO", 126, f"Init footprint:       {init_kb / 1024.0:.2f} MB")
    litert_log("INFO", 128, f"Overall footprint:    {overall_kb / 1024.0:.2f} MB")
    if peak_mb > 0:
        litert_log("INFO", 133, f"Peak memory:          {peak_mb:.2f} MB")
    else:
        litert_log("INFO", 135, "Peak memory usage not available. (peak_mem_mb <= 0)")
    litert_log("INFO", 138, "======================================\n")


def _benchmark(argv: list[str]) -> None:
    params = _parse(argv)
    if params is None:
        return
    validate_core(params)
    _echo_core_params(params)
    if params["use_cpu"] and params["require_full_delegation"]:
        litert_log("ERROR", 146, "Requesting full delegation and CPU acceleration are incompatible.",
                   SOURCE_FILE)
        os.abort()  # std::abort()
    graph = params["graph"]
    litert_log("INFO", 201, f"Loading model from: {graph}", SOURCE_FILE)
    try:
        host_graph = host_path(graph)
    except PathEscapeError:
        host_graph = ""
    if host_graph and host_graph != graph:
        _PATHS[host_graph] = graph
    import numpy  # noqa: F401  (loaded before Init is timed, as a native tool has them linked)
    import ai_edge_litert.compiled_model  # noqa: F401

    monitor = None
    if params["report_peak_memory_footprint"]:
        monitor = PeakMemoryMonitor(params["memory_footprint_check_interval_ms"])
        monitor.start()
    start_kb = max_rss_kb()
    init_start_us = now_us()
    try:
        if not host_graph or not os.path.isfile(host_graph):
            # What the runtime answers for a file it cannot open, through the same API.
            session = _Session(params, host_graph or "/nonexistent")
        else:
            session = _Session(params, host_graph)
    except BenchmarkFailed:
        if monitor is not None:
            monitor.stop()
        raise
    init_us = now_us() - init_start_us
    init_kb = max_rss_kb() - start_kb
    try:
        size_mb = os.path.getsize(host_graph) / 1e6
        log.info(f"The input model file size (MB): {cpp_double(size_mb)}")
    except OSError:
        log.warn("Failed to get the input model file size.")
    log.info(f"Initialized session in {cpp_double(init_us / 1e3)}ms.")
    if params["dry_run"]:
        params["warmup_runs"], params["warmup_min_secs"] = 0, -1.0
        params["num_runs"], params["min_secs"] = 0, -1.0
    warmup = run_phase(run_settings(params, True), session.reset_inputs, session.invoke)
    if not warmup.invoke_ok:
        _invoke_failed(warmup.error_text, monitor)
    inference = run_phase(run_settings(params, False), session.reset_inputs, session.invoke)
    overall_kb = max_rss_kb() - start_kb
    peak_mb = -1.0
    if monitor is not None:
        monitor.stop()
        peak_mb = monitor.peak_mb()
    _results_block(session.signature, init_us, warmup.stats, inference.stats, session.input_bytes,
                   init_kb, overall_kb, peak_mb)
    if params["result_file_path"]:
        _write_result(params, init_us, warmup.stats, inference.stats, init_kb, overall_kb,
                      peak_mb, host_graph, session.input_bytes)
    if params["use_profiler"] and inference.invoke_ok:
        from device_agents.benchmark_model.litert_profile import profile_summary

        summary = profile_summary(params, host_graph, session.signature, session.values,
                                  inference.stats.count)
        litert_log("INFO", 150, "\n" + summary)
    if not inference.invoke_ok:
        _invoke_failed(inference.error_text, None)


def _write_result(params, init_us, warmup, inference, init_kb, overall_kb, peak_mb, host_graph,
                  input_bytes) -> None:
    from device_agents.benchmark_model.main import result_record

    shown = params["result_file_path"]
    record = result_record(init_us, warmup, inference, init_kb, overall_kb, peak_mb,
                            os.path.getsize(host_graph) / 1e6, input_bytes)
    try:
        with open(host_path(shown), "wb") as out:
            litert_log("INFO", 142, f"Saving benchmark result to: {shown}")
            out.write(record.encode())
        litert_log("INFO", 145, f"Saved benchmark result to: {shown}")
    except (OSError, PathEscapeError):
        litert_log("ERROR", 147, f"Failed to save benchmark result to: {shown}")


def _invoke_failed(error_text: str, monitor) -> None:
    if monitor is not None:
        monitor.stop()
    for line in _host_free(error_text.splitlines()):
        if line.strip():
            log.raw_stderr(line.strip())
    raise BenchmarkFailed()


def main(argv: list[str]) -> int:
    return run_main(_benchmark, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
