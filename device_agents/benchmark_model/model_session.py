"""BenchmarkTfLiteModel::Init over the LiteRT Python interpreter: load the model, build the
interpreter, pick the signature, apply delegates, allocate tensors, make random inputs.

Raises InitFailed after printing the real tool's error lines; the caller prints `Benchmarking failed.`
"""
import os
from dataclasses import dataclass, field

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from device_agents.benchmark_model import log
from device_agents.benchmark_model.delegation import DelegationReport, delegation_report
from device_agents.benchmark_model.flags import Params
from device_agents.benchmark_model.input_layers import InputLayer, read_value_file
from device_agents.benchmark_model.native_stderr import capture_native_stderr
from device_agents.benchmark_model.unavailable_delegates import DelegateFailure

XNNPACK_KERNEL_NAME = "TfLiteXNNPackDelegate"


class InitFailed(Exception):
    """Init() returned an error status; its messages are already printed."""


@dataclass
class ModelSession:
    interpreter: Interpreter
    subgraph_index: int
    input_indices: list[int]
    input_values: list[np.ndarray] = field(default_factory=list)
    delegation: DelegationReport | None = None
    allocate_us: int = 0
    allocate_footprint_kb: int = 0
    output_indices: list[int] = field(default_factory=list)
    signature_key: str = ""
    compiled: "Fp16Engine | None" = None  # set when XNNPACK runs with FORCE_FP16

    def reset_inputs(self) -> None:
        if self.compiled is not None:
            self.compiled.reset_inputs()
            return
        wrapper = self.interpreter._interpreter
        for index, value in zip(self.input_indices, self.input_values):
            wrapper.SetTensor(index, value, self.subgraph_index)

    def invoke(self) -> None:
        if self.compiled is not None:
            self.compiled.invoke()
            return
        self.interpreter._interpreter.Invoke(self.subgraph_index)

    def input_bytes(self) -> int:
        return int(sum(value.nbytes for value in self.input_values))


def _emit_native(lines: list[str]) -> None:
    for line in lines:
        log.raw_stderr(line)


def _emit_runtime_errors(text: str) -> None:
    """An exception from the native layer carries the core's error report; print it as such."""
    for line in str(text).splitlines():
        line = line.strip()
        if line:
            log.runtime("ERROR", line)


def _is_tflite_flatbuffer(path: str) -> bool:
    with open(path, "rb") as model_file:
        head = model_file.read(8)
    return len(head) == 8 and head[4:8] == b"TFL3"


def load_model(graph: str, host_graph: str) -> None:
    """LoadModel(): the model loader mmaps the file; failures are the core's then the tool's."""
    if not os.path.isfile(host_graph) or not os.access(host_graph, os.R_OK):
        log.runtime("ERROR", f"Could not open '{graph}'.")
        log.error(f"Failed to load model {graph}")
        raise InitFailed()
    if not _is_tflite_flatbuffer(host_graph):
        log.runtime("ERROR", "The model is not a valid Flatbuffer buffer")
        log.error(f"Failed to load model {graph}")
        raise InitFailed()
    log.info(f"Loaded model {graph}")


def _resolver(params: Params) -> OpResolverType:
    # GetOpResolver(): when --use_xnnpack is set explicitly, the default XNNPACK delegate is off.
    # --use_xnnpack=true then applies the same XNNPACK delegate explicitly; the Python API can
    # only apply it as the runtime's own delegate, which is the same kernel with the same options.
    if params.was_set("use_xnnpack") and not params["use_xnnpack"]:
        return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return OpResolverType.AUTO


def thread_count(params: Params) -> int | None:
    # -1 (default) lets the runtime choose; the runtime then runs XNNPACK on one thread.
    threads = int(params["num_threads"])
    return threads if threads >= 1 else None


def create_interpreter(params: Params, host_graph: str) -> Interpreter:
    """InitInterpreter(). The core logs `Initialized TensorFlow Lite runtime.` once per process."""
    log.runtime("INFO", "Initialized TensorFlow Lite runtime.")
    with capture_native_stderr() as captured:
        try:
            interpreter = Interpreter(model_path=host_graph, num_threads=thread_count(params),
                                      experimental_op_resolver_type=_resolver(params))
        except (ValueError, RuntimeError) as exc:
            interpreter = None
            failure = str(exc)
    _emit_native(captured.lines)
    if interpreter is None:
        _emit_runtime_errors(failure)
        log.error("Failed to initialize the interpreter")
        raise InitFailed()
    return interpreter


def list_signatures(interpreter: Interpreter) -> None:
    keys = list(interpreter.get_signature_list().keys())
    log.info(f"The Model contains {len(keys)} signature key(s).")
    if keys:
        log.info("They are listed below: ")
    for key in keys:
        log.info(f"-> Signature Key: {key}")


@dataclass
class Subgraph:
    index: int
    inputs: list[int]   # tensor indices, in the order the tool matches --input_layer to
    outputs: list[int]  # tensor indices, in the order --output_filepath writes them
    signature_key: str = ""


def select_subgraph(interpreter: Interpreter, signature_key: str) -> Subgraph:
    """BenchmarkInterpreterRunner::Create: the subgraph to run, its inputs and outputs."""
    signatures = interpreter._get_full_signature_list()
    wrapper = interpreter._interpreter
    if not signatures:
        if signature_key:
            log.error("Signature key is specified, but the model does not have any signatures.")
            raise InitFailed()
        return Subgraph(0, [int(i) for i in wrapper.InputIndices()],
                        [int(i) for i in wrapper.OutputIndices()])
    if len(signatures) == 1 and not signature_key:
        signature_key = next(iter(signatures))
    elif signature_key not in signatures:
        log.error('Signature not specified or incorrect. Pass one of the following to the flag '
                  '"--signature_to_run_for"')
        for key in signatures:
            log.error(f" #> Signature key: {key}")
        raise InitFailed()
    log.info(f"Using signature: {signature_key}")
    subgraph_index = int(wrapper.GetSubgraphIndexFromSignature(signature_key))
    if subgraph_index == 0:  # the root interpreter's own inputs() and outputs() order
        inputs = [int(i) for i in wrapper.InputIndices()]
        outputs = [int(i) for i in wrapper.OutputIndices()]
    else:
        inputs = [int(i) for i in signatures[signature_key]["inputs"].values()]
        outputs = [int(i) for i in signatures[signature_key]["outputs"].values()]
    return Subgraph(subgraph_index, inputs, outputs, signature_key)


def resize_inputs(interpreter: Interpreter, subgraph_index: int, input_indices: list[int],
                  layers: list[InputLayer]) -> None:
    """The part of Init that matches the flags' layers to the model's inputs, by position."""
    if not layers:
        return
    wrapper = interpreter._interpreter
    if len(layers) != len(input_indices):
        # TFLITE_TOOLS_CHECK_EQ, with the labels the source gives them.
        log.fatal(f"Inputs mismatch: Model inputs #:{len(layers)} expected: {len(input_indices)}")
    for layer, index in zip(layers, input_indices):
        tensor_name = wrapper.TensorName(index, subgraph_index)
        if layer.name != tensor_name:
            log.warn(f"Tensor # {index} is named {tensor_name} but flags call it {layer.name}")
        current = wrapper.TensorSize(index, subgraph_index)
        if len(layer.shape) != len(current):
            log.error(f"Input tensor #{index} should have {len(current)} dimensions!")
            raise InitFailed()
    for layer, index in zip(layers, input_indices):
        wrapper.ResizeInputTensor(index, np.array(layer.shape, dtype=np.int32), False,
                                  subgraph_index)


def explicit_delegate_order(params: Params, argv: list[str]) -> list[str]:
    """Delegates requested with --use_X=true, in command-line order (CreateAllRankedDelegates)."""
    requested = []
    for position, arg in enumerate(argv):
        for name in ("gpu", "nnapi", "xnnpack"):
            if arg.startswith(f"--use_{name}=") and params[f"use_{name}"] and name not in requested:
                requested.append(name)
    return requested


def fail_with(failure: DelegateFailure) -> None:
    for emitter, text in failure.lines:
        if emitter == "tool-info":
            log.info(text)
        elif emitter == "tool-warn":
            log.warn(text)
        else:
            log.runtime(emitter, text)
    log.error(failure.tool_error)
    raise InitFailed()


def allocate(session: ModelSession, original_node_count: int, now_us, max_rss_kb) -> list[str]:
    """AllocateTensors (which applies the default XNNPACK delegate); returns the native lines."""
    footprint_before_kb = max_rss_kb()
    start_us = now_us()
    with capture_native_stderr() as captured:
        try:
            session.interpreter._interpreter.AllocateTensors(session.subgraph_index)
            failure = None
        except (ValueError, RuntimeError) as exc:
            failure = str(exc)
    session.allocate_us = now_us() - start_us
    session.allocate_footprint_kb = max_rss_kb() - footprint_before_kb
    if failure is not None:
        _emit_native(captured.lines)
        _emit_runtime_errors(failure)
        log.error("Failed to allocate tensors!")
        raise InitFailed()
    session.delegation = delegation_report(session.interpreter._interpreter, original_node_count)
    return captured.lines


def random_inputs(session: ModelSession, layers: list[InputLayer] | None = None) -> None:
    """CreateRandomTensorData with GetDataRangesForType's ranges (float [-0.5, 0.5], int32/64
    [0, 99], uint8 [0, 254], int8 [-127, 127], bool {0, 1}; other types 0), or the layer's
    --input_layer_value_range."""
    rng = np.random.default_rng()
    wrapper = session.interpreter._interpreter
    values = []
    layers = layers or []
    for position, index in enumerate(session.input_indices):
        shape = tuple(int(d) for d in wrapper.TensorSize(index, session.subgraph_index))
        dtype = np.dtype(wrapper.TensorType(index, session.subgraph_index))
        layer = layers[position] if position < len(layers) else None
        if layer is not None and layer.low is not None and dtype.kind == "f":
            value = rng.uniform(layer.low, layer.high, size=shape).astype(dtype)
        elif layer is not None and layer.low is not None and dtype.kind in "iu":
            value = rng.integers(layer.low, layer.high + 1, size=shape).astype(dtype)
        elif dtype.kind == "f" or dtype.kind == "c":
            value = rng.uniform(-0.5, 0.5, size=shape).astype(dtype)
        elif dtype == np.bool_:
            value = rng.integers(0, 2, size=shape).astype(np.bool_)
        elif dtype in (np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.uint32), np.dtype(np.uint64)):
            value = rng.integers(0, 100, size=shape).astype(dtype)
        elif dtype == np.dtype(np.uint8):
            value = rng.integers(0, 255, size=shape).astype(dtype)
        elif dtype == np.dtype(np.int8):
            value = rng.integers(-127, 128, size=shape).astype(dtype)
        elif dtype.kind in "iu":
            value = np.zeros(shape, dtype=dtype)
        else:
            log.error(f"Don't know how to populate tensor {wrapper.TensorName(index, session.subgraph_index)} "
                      f"of type {dtype}")
            raise InitFailed()
        values.append(value)
    session.input_values = values


def load_value_files(session: ModelSession, layers: list[InputLayer], host_path) -> None:
    """PrepareInputData: each layer with a value file takes the file's raw bytes (read once;
    every invocation gets them). `host_path` maps a device path to the sandbox's file."""
    from device_agents.benchmark_model.device_paths import PathEscapeError

    for position, layer in enumerate(layers):
        if not layer.value_file or position >= len(session.input_indices):
            continue
        current = session.input_values[position]
        try:
            host_file = host_path(layer.value_file)
        except PathEscapeError:  # a path outside the sandbox reads as one that cannot be opened
            host_file = None
        data = read_value_file(layer.value_file, host_file, current.nbytes)
        session.input_values[position] = np.frombuffer(data, dtype=current.dtype).reshape(
            current.shape).copy()


def output_bytes(session: ModelSession) -> list[bytes]:
    """Every output tensor's raw bytes, in the interpreter's (or the signature subgraph's)
    output order, as OutputSaver writes them."""
    if session.compiled is not None:
        return [array.tobytes() for array in session.compiled.outputs()]
    wrapper = session.interpreter._interpreter
    return [np.asarray(wrapper.GetTensor(index, session.subgraph_index)).tobytes()
            for index in session.output_indices]


# TFLITE_XNNPACK_DELEGATE_FLAG_QS8 | _QU8 (TfLiteXNNPackDelegateOptionsDefault's flags) and
# _FORCE_FP16 (xnnpack_delegate.h): CpuOptions.xnnpack_flags replaces the defaults, so all three.
XNNPACK_DEFAULT_FLAGS = 0x1 | 0x2
XNNPACK_FLAG_FORCE_FP16 = 0x4


class Fp16Engine:
    """`--use_xnnpack=true --xnnpack_force_fp16=true`: XNNPACK with FORCE_FP16, for real.

    The Python Interpreter cannot set XNNPACK's flags; LiteRT's CompiledModel runs the same
    XNNPACK delegate with the flags given (CpuOptions.xnnpack_flags), so the invocations go
    there, on the session's signature, with the session's input values."""

    used = False  # the runtime's accelerator registry logs its teardown at exit (main.main)

    def __init__(self, session: ModelSession, host_graph: str, num_threads: int | None):
        Fp16Engine.used = True
        signatures = session.interpreter._get_full_signature_list()
        key = session.signature_key or (next(iter(signatures)) if signatures else "")
        if not key:  # LiteRT's CompiledModel runs signatures only
            log.error("XNNPack FP16 inference needs a model with a signature here")
            raise InitFailed()
        with capture_native_stderr():  # the CompiledModel runtime's own start-up lines
            from ai_edge_litert.compiled_model import CompiledModel
            from ai_edge_litert.environment import Environment
            from ai_edge_litert.hardware_accelerator import HardwareAccelerator
            from ai_edge_litert.options import CpuOptions, Options

            self.environment = Environment.create()
            self.model = CompiledModel.from_file(host_graph, environment=self.environment, options=Options(
                hardware_accelerators=HardwareAccelerator.CPU,
                cpu_options=CpuOptions(num_threads=num_threads or 0,
                                       xnnpack_flags=XNNPACK_DEFAULT_FLAGS | XNNPACK_FLAG_FORCE_FP16)))
        self.key = key
        by_index = {int(v): k for k, v in signatures[key]["inputs"].items()} if key else {}
        out_by_index = {int(v): k for k, v in signatures[key]["outputs"].items()} if key else {}
        self.input_names = [by_index[i] for i in session.input_indices]
        self.output_names = [out_by_index[i] for i in session.output_indices]
        self.session = session
        wrapper = session.interpreter._interpreter
        for name, index in zip(self.input_names, session.input_indices):
            shape = [int(d) for d in wrapper.TensorSize(index, session.subgraph_index)]
            if list(self.model.get_input_tensor_details(key)[name].get("shape", [])) != shape:
                # --input_layer_shape resized it: the same resize, non-strict as the interpreter's
                with capture_native_stderr():
                    self.model.resize_input_tensor_by_name(key, name, shape, strict=False)
        self.inputs = {n: self.model.create_input_buffer_by_name(key, n) for n in self.input_names}
        self.outputs_ = {n: self.model.create_output_buffer_by_name(key, n)
                         for n in self.output_names}
        details = self.model.get_output_tensor_details(key)
        self.output_details = [(np.dtype(details[n].get("dtype", "float32")),
                                tuple(details[n].get("shape", []))) for n in self.output_names]
        with capture_native_stderr():  # the runtime sets its accelerators up on the first run
            self.invoke()

    def close(self) -> None:
        """Let go of the runtime while its lines are still captured (it logs each accelerator
        it destroys, which the classic tool never prints)."""
        with capture_native_stderr():
            self.inputs.clear()
            self.outputs_.clear()
            del self.model, self.environment
            import gc

            gc.collect()

    def reset_inputs(self) -> None:
        for name, value in zip(self.input_names, self.session.input_values):
            self.inputs[name].write(value)

    def invoke(self) -> None:
        self.model.run_by_name(self.key, self.inputs, self.outputs_)

    def outputs(self) -> list[np.ndarray]:
        arrays = []
        for name, (dtype, shape) in zip(self.output_names, self.output_details):
            count = int(np.prod(shape)) if shape else 1
            arrays.append(self.outputs_[name].read(count, dtype).reshape(shape))
        return arrays
