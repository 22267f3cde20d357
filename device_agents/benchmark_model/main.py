"""Entry point: `benchmark_main.cc` + `BenchmarkModel::Run()` + `BenchmarkLoggingListener`.

    INFO: STARTING!  -> flags -> param echo -> Init (load, interpreter, delegates, allocate)
    -> warmup phase -> timed phase -> timings + memory lines [-> op profile] [-> result proto]

Exit 0 on success; on any failure `ERROR: Benchmarking failed.` and exit 1, like the real tool.
Heavy imports (numpy, LiteRT) wait until the flags are known to be good.
"""
import os
import sys

from device_agents.benchmark_model import log
from device_agents.benchmark_model.device_paths import PathEscapeError, host_path
from device_agents.benchmark_model.flags import (Params, cpp_double, echo_lines, parse_flags,
                                                 usage_text)
from device_agents.benchmark_model.input_layers import (InputLayer, InvalidInputLayers,
                                                        populate_input_layers, save_outputs)
from device_agents.benchmark_model.memory import PeakMemoryMonitor, max_rss_kb, rss_status_mb
from device_agents.benchmark_model.runner import RunSettings, now_us, run_phase
from device_agents.benchmark_model.unavailable_delegates import gpu_failure, nnapi_failure

EXIT_FAILURE = 1
MEMORY_CHECK_INTERVAL_MS = 50
OP_PROFILING_OUTPUT_MODES = ("stdout", "csv", "proto")


class BenchmarkFailed(Exception):
    """A step failed; its messages are printed. main() adds `Benchmarking failed.`"""


def _parse_or_fail(argv: list[str]) -> Params:
    parsed = parse_flags(argv)
    for message in parsed.errors:
        log.error(message)
    if parsed.errors or parsed.help_requested:
        log.error(usage_text(argv[0] if argv else "benchmark_model"))
        raise BenchmarkFailed()
    if parsed.unconsumed:
        log.warn("Unconsumed cmdline flags: " + " ".join(parsed.unconsumed))
    return parsed.params


def validate_core(params: Params) -> None:
    """BenchmarkModel::ValidateParams (both flavours inherit it)."""
    if params["report_peak_memory_footprint"]:
        interval_ms = params["memory_footprint_check_interval_ms"]
        if interval_ms <= 0:
            log.warn(f"--memory_footprint_check_interval_ms is set to {interval_ms} (ms), This value "
                     f"is invalid, and it will be set to the default value "
                     f"{MEMORY_CHECK_INTERVAL_MS} (ms).")
            params["memory_footprint_check_interval_ms"] = MEMORY_CHECK_INTERVAL_MS


def _validate(params: Params) -> list[InputLayer]:
    """ValidateParams() of BenchmarkModel and BenchmarkTfLiteModel; the input layers."""
    validate_core(params)
    if not params["graph"]:
        log.error("Please specify the name of your TF Lite input file with --graph")
        raise BenchmarkFailed()
    if params["enable_op_profiling"]:
        mode = params["op_profiling_output_mode"]
        if mode not in OP_PROFILING_OUTPUT_MODES:
            log.error(f"Output mode{mode} is not supported. Supported values are: 'stdout', "
                      "'csv' and 'proto'.")
            raise BenchmarkFailed()
    try:
        return populate_input_layers(params["input_layer"], params["input_layer_shape"],
                                     params["input_layer_value_range"],
                                     params["input_layer_value_files"])
    except InvalidInputLayers:
        raise BenchmarkFailed() from None


def _log_params(params: Params) -> None:
    nnapi_error = None
    if params["use_nnapi"]:
        from device_agents.benchmark_model.unavailable_delegates import NNAPI_LIBRARY_ERROR
        nnapi_error = NNAPI_LIBRARY_ERROR
    for stream, text in echo_lines(params, nnapi_error):
        if stream == "info":
            log.info(text)
        else:
            log.raw_stderr(text)


def _model_file_size_bytes(host_graph: str) -> int:
    try:
        return os.path.getsize(host_graph)
    except OSError:
        return -1  # ifstream::tellg() on a file that cannot be opened


def _init(params: Params, argv: list[str], graph: str, host_graph: str,
          layers: list[InputLayer]):
    """BenchmarkTfLiteModel::Init(): the session, allocated, with random inputs."""
    from device_agents.benchmark_model import model_session as ms

    ms.load_model(graph, host_graph)
    interpreter = ms.create_interpreter(params, host_graph)
    if params["list_signatures"]:
        ms.list_signatures(interpreter)
        raise ms.InitFailed()
    interpreter.get_signature_list()
    subgraph = ms.select_subgraph(interpreter, params["signature_to_run_for"])
    ms.resize_inputs(interpreter, subgraph.index, subgraph.inputs, layers)
    session = ms.ModelSession(interpreter, subgraph.index, subgraph.inputs,
                              output_indices=subgraph.outputs,
                              signature_key=subgraph.signature_key)
    original_node_count = int(interpreter._interpreter.NumNodes())

    requested = ms.explicit_delegate_order(params, argv)
    if not requested and params["require_full_delegation"]:
        log.error("Disallowed CPU fallback detected.")
        raise ms.InitFailed()
    native_lines: list[str] = []
    allocated = False
    for name in requested:
        if name == "gpu":
            ms.fail_with(gpu_failure(params["gpu_backend"], original_node_count))
        elif name == "nnapi":
            ms.fail_with(nnapi_failure())
        else:
            if params["xnnpack_force_fp16"]:  # evaluation::CreateXNNPACKDelegate says so
                log.info("XNNPack FP16 inference enabled.")
            # The XNNPACK kernel is applied while allocating (see model_session._resolver).
            native_lines = ms.allocate(session, original_node_count, now_us, max_rss_kb)
            allocated = True
            _print_delegation(native_lines, session, explicit=True)
            report = session.delegation
            if params["require_full_delegation"] and not report.fully_delegated:
                log.error("Disallowed CPU fallback detected.")
                raise ms.InitFailed()
            if report.fully_delegated:
                log.info("Explicitly applied XNNPACK delegate, and the model graph will be "
                         "completely executed by the delegate.")
            elif report.partitions > 0:
                log.info("Explicitly applied XNNPACK delegate, and the model graph will be partially "
                         f"executed by the delegate w/ {report.partitions} delegate kernels.")
            else:
                log.info("Though XNNPACK delegate is explicitly applied, the model graph will not "
                         "be executed by the delegate.")
    if not allocated:
        native_lines = ms.allocate(session, original_node_count, now_us, max_rss_kb)
        _print_delegation(native_lines, session, explicit=False)
    elif params["xnnpack_force_fp16"]:
        # The explicit XNNPACK delegate with FORCE_FP16 computes the invocations from here on.
        session.compiled = ms.Fp16Engine(session, host_graph, ms.thread_count(params))
    ms.random_inputs(session, layers)
    return session


def _print_delegation(native_lines: list[str], session, explicit: bool) -> None:
    """The runtime's own lines about the XNNPACK delegate, then (explicit) the provider's line."""
    from device_agents.benchmark_model.model_session import XNNPACK_KERNEL_NAME

    for line in native_lines:
        log.raw_stderr(line)
    if explicit:
        log.info("XNNPACK delegate created.")
    report = session.delegation
    if report is not None and report.partitions > 0:
        log.runtime("VERBOSE", report.verbose_line(XNNPACK_KERNEL_NAME))


def run_settings(params: Params, warmup: bool) -> RunSettings:
    """The warmup or timed phase's settings (BenchmarkModel's core flags, both flavours)."""
    if warmup:
        return RunSettings(params["warmup_runs"], params["warmup_min_secs"], params["max_secs"],
                           params["run_delay"], params["run_frequency"])
    return RunSettings(params["num_runs"], params["min_secs"], params["max_secs"],
                       params["run_delay"], params["run_frequency"])


def _log_results(init_us, warmup, inference, init_kb, overall_kb, peak_mb) -> None:
    log.info(f"Inference timings in us: Init: {init_us}, First inference: {warmup.first}, "
             f"Warmup (avg): {cpp_double(warmup.avg())}, Inference (avg): {cpp_double(inference.avg())}")
    log.info("Note: as the benchmark tool itself affects memory footprint, the following is only "
             "APPROXIMATE to the actual memory footprint of the model at runtime. Take the "
             "information at your discretion.")
    log.info(f"Memory footprint delta from the start of the tool (MB): "
             f"init={cpp_double(init_kb / 1024.0)} overall={cpp_double(overall_kb / 1024.0)}")
    if peak_mb > 0:
        log.info(f"Overall peak memory footprint (MB) via periodic monitoring: {cpp_double(peak_mb)}")
        status = rss_status_mb()
        log.info("Memory status at the end of exeution:")
        log.info(f"- VmRSS              : {status.vm_rss_mb} MB")
        log.info(f"+ RssAnnon           : {status.anon_mb} MB")
        log.info(f"+ RssFile + RssShmem : {status.file_and_shmem_mb} MB")


def _write_result_file(shown_path: str, host_file: str, record) -> None:
    """Logs the path as given on the command line (a device path), writes the host file."""
    try:
        with open(host_file, "wb") as out:
            log.info(f"Saving benchmark result to: {shown_path}")
            out.write(record.encode())
        log.info(f"Saved benchmark result to: {shown_path}")
    except OSError:
        log.error(f"Failed to save benchmark result to: {shown_path}")


def result_record(init_us, warmup, inference, init_kb, overall_kb, peak_mb, model_size_mb, input_bytes):
    from device_agents.benchmark_model.result_proto import BenchmarkResultRecord

    total_us = inference.sum
    throughput = (input_bytes * inference.count * 1e6 / total_us / (1024.0 * 1024.0)) if total_us else 0.0
    empty = inference.empty()
    return BenchmarkResultRecord(
        avg_ms=inference.avg() / 1000.0, min_ms=(0 if empty else inference.min) / 1000.0,
        max_ms=(0 if empty else inference.max) / 1000.0,
        stddev_ms=inference.std_deviation() / 1000.0,
        median_ms=(0 if empty else inference.percentile(50)) / 1000.0,
        p5_ms=(0 if empty else inference.percentile(5)) / 1000.0,
        p95_ms=(0 if empty else inference.percentile(95)) / 1000.0,
        init_ms=init_us / 1000.0, first_inference_ms=warmup.first / 1000.0,
        average_warm_up_ms=warmup.avg() / 1000.0, init_footprint_kb=init_kb,
        overall_footprint_kb=overall_kb, peak_mem_mb=peak_mb, model_size_mb=model_size_mb,
        num_runs=inference.count, num_warmup_runs=warmup.count,
        model_throughput_in_mb_per_sec=throughput)


def _benchmark(argv: list[str]) -> None:
    params = _parse_or_fail(argv)
    layers = _validate(params)
    _log_params(params)

    graph = params["graph"]
    try:
        host_graph = host_path(graph)
    except PathEscapeError:
        host_graph = ""  # reads as a file that cannot be opened
    from device_agents.benchmark_model.model_session import InitFailed  # loads numpy + LiteRT

    monitor = None
    if params["report_peak_memory_footprint"]:
        monitor = PeakMemoryMonitor(params["memory_footprint_check_interval_ms"])
        monitor.start()
    model_size_mb = _model_file_size_bytes(host_graph) / 1e6
    start_kb = max_rss_kb()
    init_start_us = now_us()
    try:
        session = _init(params, argv, graph, host_graph, layers)
    except InitFailed:
        if monitor is not None:
            monitor.stop()
        raise BenchmarkFailed()
    init_kb = max_rss_kb() - start_kb
    init_us = now_us() - init_start_us
    if model_size_mb > 0:
        log.info(f"The input model file size (MB): {cpp_double(model_size_mb)}")
    else:
        log.warn("Failed to get the input model file size.")
    log.info(f"Initialized session in {cpp_double(init_us / 1e3)}ms.")
    from device_agents.benchmark_model.model_session import load_value_files, output_bytes

    load_value_files(session, layers, host_path)  # PrepareInputData: read once, used every run

    if params["dry_run"]:
        params["warmup_runs"], params["warmup_min_secs"] = 0, -1.0
        params["num_runs"], params["min_secs"] = 0, -1.0

    warmup = run_phase(run_settings(params, warmup=True), session.reset_inputs, session.invoke)
    if not warmup.invoke_ok:
        _report_invoke_failure(warmup.error_text, monitor)
    inference = run_phase(run_settings(params, warmup=False), session.reset_inputs, session.invoke)
    overall_kb = max_rss_kb() - start_kb
    peak_mb = -1.0
    if monitor is not None:
        monitor.stop()
        peak_mb = monitor.peak_mb()

    _log_results(init_us, warmup.stats, inference.stats, init_kb, overall_kb, peak_mb)
    if params["enable_op_profiling"]:
        from device_agents.benchmark_model.op_profile import report_op_profile
        report_op_profile(params, host_graph, session, inference.stats.count)
    if params["result_file_path"]:
        record = result_record(init_us, warmup.stats, inference.stats, init_kb, overall_kb, peak_mb,
                                model_size_mb, session.input_bytes())
        try:
            result_path = host_path(params["result_file_path"])
        except PathEscapeError:
            log.error(f"Failed to save benchmark result to: {params['result_file_path']}")
        else:
            _write_result_file(params["result_file_path"], result_path, record)
    if params["output_filepath"]:  # OutputSaver, the last listener: the last invocation's outputs
        try:
            output_file = host_path(params["output_filepath"])
        except PathEscapeError:
            output_file = None
        save_outputs(output_file, output_bytes(session))
    if session.compiled is not None:
        session.compiled.close()
    if not inference.invoke_ok:
        _report_invoke_failure(inference.error_text, None)


def _report_invoke_failure(error_text: str, monitor) -> None:
    if monitor is not None:
        monitor.stop()
    for line in error_text.splitlines():
        if line.strip():
            log.runtime("ERROR", line.strip())
    raise BenchmarkFailed()


def run_main(benchmark, argv: list[str]) -> int:
    """`benchmark_main.cc` of both flavours: STARTING!, the run, `Benchmarking failed.` + exit 1."""
    log.info("STARTING!")
    try:
        benchmark(list(argv))
    except BenchmarkFailed:
        log.error("Benchmarking failed.")
        return EXIT_FAILURE
    return 0


def main(argv: list[str]) -> int:
    code = run_main(_benchmark, argv)
    session_module = sys.modules.get("device_agents.benchmark_model.model_session")
    if session_module is not None and session_module.Fp16Engine.used:
        # LiteRT's CompiledModel runtime logs each accelerator its static registry destroys at
        # exit, which the classic tool never prints: leave without running those destructors.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
