"""Command-line flags of benchmark_model: parsing (`tflite/tools/command_line_flags.cc`) and the
parameter echo (`LogParams` of BenchmarkModel, BenchmarkTfLiteModel and the delegate providers).

Only `--name=value` is accepted. Each flag takes the first argv that starts with `--name=`; what no
flag took is reported back as unconsumed. A flag value that does not parse is an error.
"""
import re
import struct
from dataclasses import dataclass, field

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class FlagSpec:
    name: str
    kind: str  # "int" | "float" | "bool" | "str"
    default: object
    label: str | None  # echo label; None = never echoed
    usage: str
    always_echo: bool = False  # `Graph` and `Signature to run` are logged even when not set
    echo_only_if_set: bool = False  # `list_signatures` ignores --verbose


def _spec(name, kind, default, label, usage="", **kw) -> FlagSpec:
    return FlagSpec(name, kind, default, label, usage, **kw)


# In the order the real tool logs them: BenchmarkModel, BenchmarkTfLiteModel, then the delegate
# providers of an Android build (default execution provider, GPU, NNAPI, XNNPACK).
CORE_SPECS = [
    _spec("num_runs", "int", 50, "Min num runs", "expected number of runs, see also min_secs, max_secs"),
    _spec("min_secs", "float", 1.0, "Min runs duration (seconds)", "minimum number of seconds to rerun for"),
    _spec("max_secs", "float", 150.0, "Max runs duration (seconds)", "maximum number of seconds to rerun for"),
    _spec("run_delay", "float", -1.0, "Inter-run delay (seconds)", "delay between runs in seconds"),
    _spec("run_frequency", "float", -1.0, "Number of prorated runs per second",
          "Execute at a fixed frequency, instead of a fixed delay."),
    _spec("num_threads", "int", -1, "Num threads", "number of threads"),
    _spec("use_caching", "bool", False, "Use caching", "Enable caching of prepacked weights matrices"),
    _spec("benchmark_name", "str", "", "Benchmark name", "benchmark name"),
    _spec("output_prefix", "str", "", "Output prefix", "benchmark output prefix"),
    _spec("warmup_runs", "int", 1, "Min warmup runs", "minimum number of runs performed on initialization"),
    _spec("warmup_min_secs", "float", 0.5, "Min warmup runs duration (seconds)",
          "minimum number of seconds to rerun for warm-up"),
    _spec("verbose", "bool", False, None, "Whether to log parameters whose values are not set."),
    _spec("dry_run", "bool", False, "Run w/o invoking kernels", "load and allocate only"),
    _spec("report_peak_memory_footprint", "bool", False, "Report the peak memory footprint",
          "Report the peak memory footprint by periodically checking the memory footprint."),
    _spec("memory_footprint_check_interval_ms", "int", 50, "Memory footprint check interval (ms)",
          "The interval in millisecond between two consecutive memory footprint checks."),
    _spec("gpu_invoke_loop_times", "int", 1, None, "Number of GPU delegate invoke loop iterations."),
]

TFLITE_SPECS = [
    _spec("graph", "str", "", "Graph", "graph file name", always_echo=True),
    _spec("signature_to_run_for", "str", "", "Signature to run",
          "the signature to benchmark when the model has several", always_echo=True),
    _spec("list_signatures", "bool", False, "List signatures from the provided model",
          "Displays all signatures present in the model and then terminates the program.",
          echo_only_if_set=True),
    _spec("input_layer", "str", "", "Input layers", "input layer names"),
    _spec("input_layer_shape", "str", "", "Input shapes", "input layer shape"),
    _spec("input_layer_value_range", "str", "", "Input value ranges", "value range for integer inputs"),
    _spec("input_layer_value_files", "str", "", "Input value files", "value files for inputs"),
    _spec("allow_fp16", "bool", False, "Allow fp16", "allow fp16"),
    _spec("require_full_delegation", "bool", False, "Require full delegation",
          "require delegate to run the entire graph"),
    _spec("enable_op_profiling", "bool", False, "Enable op profiling", "enable op profiling"),
    _spec("op_profiling_output_mode", "str", "stdout", "Op profiling output mode.",
          "Output mode for op profiling results. Supported values are: 'stdout', 'csv' and 'proto'."),
    _spec("op_profiling_output_file", "str", "", "Op profiling output file.",
          "Output file for op profiling results."),
    _spec("max_profiling_buffer_entries", "int", 1024, "Max initial profiling buffer entries",
          "max initial profiling buffer entries"),
    _spec("allow_dynamic_profiling_buffer_increase", "bool", False,
          "Allow dynamic increase on profiling buffer entries",
          "allow dynamic increase on profiling buffer entries"),
    _spec("profiling_output_csv_file", "str", "", "CSV File to export profiling data to",
          "[DEPRECATED] File path to export profile data as CSV"),
    _spec("export_model_runtime_info", "bool", False, "Enable Model Runtime Info Export",
          "Enable Model Runtime Info Export"),
    _spec("model_runtime_info_output_file", "str", "", "Proto File to export model runtime info to",
          "Proto File to export model runtime info to"),
    _spec("print_preinvoke_state", "bool", False, "Print pre-invoke interpreter state",
          "print out the interpreter internals just before calling Invoke"),
    _spec("print_postinvoke_state", "bool", False, "Print post-invoke interpreter state",
          "print out the interpreter internals just before benchmark completes"),
    _spec("release_dynamic_tensors", "bool", False, "Release dynamic tensor memory",
          "Ensure dynamic tensor's memory is released when they are not used."),
    _spec("optimize_memory_for_large_tensors", "int", 0, "Optimize memory usage for large tensors",
          "Optimize memory usage for large tensors with sacrificing latency."),
    _spec("disable_delegate_clustering", "bool", False, "Disable delegate clustering",
          "Disable delegate clustering."),
    _spec("enable_builtin_cast_constant_cache", "bool", False, "Constant CAST output cache",
          "Cache the output of the builtin cast operation when its input is a constant tensor."),
    _spec("output_filepath", "str", "", "File path to export outputs layer to",
          "File path to export outputs layer as binary data."),
    _spec("output_proto_filepath", "str", "", "File path to export outputs layer as tf example to",
          "File path to export outputs layer as tf example proto."),
    _spec("result_file_path", "str", "",
          "File path to save the benchmark result in binary proto format",
          "Path to save the benchmark result in binary proto format."),
    _spec("tensor_name_display_length", "int", 25, "Tensor name display length",
          "The number of characters to show for the tensor's name"),
    _spec("tensor_type_display_length", "int", 15, "Tensor type display length",
          "The number of characters to show for the tensor's type"),
    _spec("alloc_type_display_length", "int", 18, "Tensor allocation type display length",
          "The number of characters to show for the tensor's allocation type"),
]

DEFAULT_PROVIDER_SPECS = [
    _spec("help", "bool", False, "print out all supported flags", "Print out all supported flags if true."),
    _spec("num_threads", "int", -1, "#threads used for CPU inference",
          "number of threads used for inference on CPU."),
    _spec("max_delegated_partitions", "int", 0, "Max number of delegated partitions",
          "Max number of partitions to be delegated."),
    _spec("min_nodes_per_partition", "int", 0, "Min nodes per partition",
          "The minimal number of TFLite graph nodes of a partition that has to be reached."),
    _spec("first_delegate_node_index", "int", 0, "Index of the first node that could be delegated",
          "The index of the first node that could be delegated."),
    _spec("last_delegate_node_index", "int", INT32_MAX, "Index of the last node that could be delegated",
          "The index of the last node that could be delegated."),
    _spec("delegate_serialize_dir", "str", "", "Directory for delegate serialization",
          "Directory to be used by delegates for serializing any model data."),
    _spec("delegate_serialize_token", "str", "", "Model-specific token/key for delegate serialization.",
          "Model-specific token acting as a namespace for delegate serialization."),
]

GPU_SPECS = [
    _spec("use_gpu", "bool", False, "Use gpu", "use gpu"),
    _spec("gpu_precision_loss_allowed", "bool", True, "Allow lower precision in gpu",
          "Allow to process computation in lower precision than FP32 in GPU."),
    _spec("gpu_experimental_enable_quant", "bool", True, "Enable running quant models in gpu",
          "Whether to enable the GPU delegate to run quantized models or not."),
    _spec("gpu_inference_for_sustained_speed", "bool", False, "Prefer maximizing the throughput in gpu",
          "Whether to prefer maximizing the throughput."),
    _spec("gpu_backend", "str", "", "GPU backend",
          "Force the GPU delegate to use a particular backend for execution, and fail if "
          "unsuccessful. Should be one of: cl, gl"),
]

# NNAPI's LogParams stops after `Use NNAPI` when --use_nnapi is false.
NNAPI_SPECS = [
    _spec("use_nnapi", "bool", False, "Use NNAPI", "use nnapi delegate api"),
    _spec("nnapi_execution_preference", "str", "", "NNAPI execution preference",
          "execution preference for nnapi delegate."),
    _spec("nnapi_execution_priority", "str", "", "Model execution priority in nnapi",
          "The model execution priority in nnapi."),
    _spec("nnapi_accelerator_name", "str", "", "NNAPI accelerator name",
          "the name of the nnapi accelerator to use (requires Android Q+)"),
    _spec("disable_nnapi_cpu", "bool", True, "Disable NNAPI cpu", "Disable the NNAPI CPU device"),
    _spec("nnapi_allow_fp16", "bool", False, "Allow fp16 in NNAPI", "Allow fp32 computation to be run in fp16"),
    _spec("nnapi_allow_dynamic_dimensions", "bool", False, "Allow dynamic dimensions in NNAPI",
          "Whether to allow dynamic dimension sizes without re-compilation."),
    _spec("nnapi_use_burst_mode", "bool", False, "Use burst mode in NNAPI", "use NNAPI Burst mode if supported."),
    _spec("nnapi_support_library_path", "str", "", None,
          "Path from which NNAPI support library will be loaded to construct the delegate."),
]

XNNPACK_SPECS = [
    _spec("use_xnnpack", "bool", False, "Use xnnpack",
          "explicitly apply the XNNPACK delegate. Note the XNNPACK delegate could be implicitly "
          "applied by the TF Lite runtime regardless the value of this parameter. To disable this "
          "implicit application, set the value to false explicitly."),
    _spec("xnnpack_force_fp16", "bool", False, "xnnpack_force_fp16", "enforce float16 inference."),
    _spec("xnnpack_weight_cache_file_path", "str", "", "xnnpack_weight_cache_file_path",
          "enable file-backed weight caching."),
    _spec("xnnpack_runtime_flags", "int", 0, "Extra flags for XNNPACK runtime",
          "Extra flags to pass to XNNPACK runtime."),
]

ECHO_GROUPS = [CORE_SPECS, TFLITE_SPECS, DEFAULT_PROVIDER_SPECS, GPU_SPECS, NNAPI_SPECS, XNNPACK_SPECS]

ALL_SPECS: dict[str, FlagSpec] = {}
for _group in ECHO_GROUPS:
    for _s in _group:
        ALL_SPECS.setdefault(_s.name, _s)

_INT_PREFIX = re.compile(r"\s*[+-]?\d+")
_FLOAT_PREFIX = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def to_float32(value: float) -> float:
    """Float params are C++ floats: keep the value the real tool would hold."""
    return struct.unpack("f", struct.pack("f", value))[0]


def parse_value(kind: str, text: str):
    """Parse like `std::istringstream >> T` (a valid numeric prefix is enough); None = failure."""
    if kind == "str":
        return text
    if kind == "bool":
        return {"true": True, "1": True, "false": False, "0": False}.get(text)
    if text == "":
        return 0  # istream at eof: the real tool accepts it and keeps an unset value
    if kind == "int":
        match = _INT_PREFIX.match(text)
        if not match:
            return None
        value = int(match.group(0))
        return value if -(2**31) <= value <= INT32_MAX else None
    match = _FLOAT_PREFIX.match(text)
    if not match:
        return None
    return to_float32(float(match.group(0)))


def cpp_stream(value) -> str:
    """A value as C++ `operator<<` prints it (bool -> 1/0, float -> 6 significant digits)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return cpp_double(value)
    return str(value)


def cpp_double(value: float) -> str:
    if value != value:
        return "nan"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    return "%g" % value


@dataclass
class Params:
    values: dict = field(default_factory=dict)
    set_on_command_line: set = field(default_factory=set)

    def __getitem__(self, name: str):
        return self.values[name]

    def __setitem__(self, name: str, value) -> None:
        self.values[name] = value

    def was_set(self, name: str) -> bool:
        return name in self.set_on_command_line


@dataclass
class ParseResult:
    params: Params
    errors: list[str]
    unconsumed: list[str]
    help_requested: bool


def specs_of(groups: list[list[FlagSpec]]) -> dict[str, FlagSpec]:
    """Every flag of `groups` once, in registration order (a later duplicate is the same flag)."""
    specs: dict[str, FlagSpec] = {}
    for group in groups:
        for spec in group:
            specs.setdefault(spec.name, spec)
    return specs


def parse_flags(argv: list[str], specs: dict[str, FlagSpec] | None = None) -> ParseResult:
    specs = ALL_SPECS if specs is None else specs
    params = Params({name: spec.default for name, spec in specs.items()})
    args = argv[1:]
    consumed = [False] * len(args)
    errors: list[str] = []
    for name, spec in specs.items():
        prefix = f"--{name}="
        for i, arg in enumerate(args):
            if consumed[i] or not arg.startswith(prefix):
                continue
            consumed[i] = True
            value = parse_value(spec.kind, arg[len(prefix):])
            if value is None:
                errors.append(f"Failed to parse flag '{name}' against argv '{arg}'")
            else:
                params[name] = value
                params.set_on_command_line.add(name)
            break
    unconsumed = [arg for arg, used in zip(args, consumed) if not used]
    # Flags::Parse fails when the first argument left is --help; `help` is a flag of the
    # classic tool's default execution provider only.
    help_requested = bool(params.values.get("help")) or (bool(unconsumed) and unconsumed[0] == "--help")
    return ParseResult(params, errors, unconsumed, help_requested)


def usage_text(program: str, groups: list[list[FlagSpec]] | None = None) -> str:
    """`Flags::Usage`: one tab-separated row per flag."""
    rows = []
    seen = set()
    for group in ECHO_GROUPS if groups is None else groups:
        for spec in group:
            if spec.name in seen:
                continue
            seen.add(spec.name)
            default = spec.default
            if spec.kind == "bool":
                shown = "true" if default else "false"
            else:
                shown = cpp_stream(default)
            rows.append((f"--{spec.name}={shown}", spec))
    width = max(len(name) for name, _ in rows)
    type_names = {"int": "int32", "float": "float", "bool": "bool", "str": "string"}
    lines = [f"usage: {program} <flags>", "Flags:"]
    for name_column, spec in rows:
        lines.append(f"\t{name_column:<{width}}\t{type_names[spec.kind]}\toptional\t{spec.usage}")
    return "\n".join(lines) + "\n"


def echo_lines(params: Params, nnapi_library_error: str | None = None) -> list[tuple[str, str]]:
    """LogParams output as (stream, text) pairs; stream is "info" or "stderr".

    First `Log parameter values verbosely: [v]`, then `label: [value]` for each param set on the
    command line (all of them with --verbose=true). `nnapi_library_error` is what loading the NNAPI
    library printed: the NNAPI provider loads it while logging its params (only with
    --use_nnapi=true), so its error lands at the same place as on a phone.
    """
    verbose = bool(params["verbose"])
    lines = [("info", f"Log parameter values verbosely: [{cpp_stream(verbose)}]")]

    def log(spec: FlagSpec) -> None:
        if spec.label is None:
            return
        if spec.echo_only_if_set:
            show = params.was_set(spec.name)
        else:
            show = spec.always_echo or verbose or params.was_set(spec.name)
        if show:
            lines.append(("info", f"{spec.label}: [{cpp_stream(params[spec.name])}]"))

    for group in ECHO_GROUPS:
        for spec in group:
            log(spec)
            if group is NNAPI_SPECS and spec.name == "use_nnapi" and not params["use_nnapi"]:
                break
            if group is NNAPI_SPECS and spec.name == "nnapi_accelerator_name" and nnapi_library_error:
                lines.append(("stderr", nnapi_library_error))
    return lines
