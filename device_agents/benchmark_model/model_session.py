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

    def reset_inputs(self) -> None:
        wrapper = self.interpreter._interpreter
        for index, value in zip(self.input_indices, self.input_values):
            wrapper.SetTensor(index, value, self.subgraph_index)

    def invoke(self) -> None:
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


def _num_threads(params: Params) -> int | None:
    # -1 (default) lets the runtime choose; the runtime then runs XNNPACK on one thread.
    threads = int(params["num_threads"])
    return threads if threads >= 1 else None


def create_interpreter(params: Params, host_graph: str) -> Interpreter:
    """InitInterpreter(). The core logs `Initialized TensorFlow Lite runtime.` once per process."""
    log.runtime("INFO", "Initialized TensorFlow Lite runtime.")
    with capture_native_stderr() as captured:
        try:
            interpreter = Interpreter(model_path=host_graph, num_threads=_num_threads(params),
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


def select_subgraph(interpreter: Interpreter, signature_key: str) -> tuple[int, list[int]]:
    """BenchmarkInterpreterRunner::Create: (subgraph index, input tensor indices)."""
    signatures = interpreter._get_full_signature_list()
    if not signatures:
        if signature_key:
            log.error("Signature key is specified, but the model does not have any signatures.")
            raise InitFailed()
        return 0, [int(i) for i in interpreter._interpreter.InputIndices()]
    if len(signatures) == 1 and not signature_key:
        signature_key = next(iter(signatures))
    elif signature_key not in signatures:
        log.error('Signature not specified or incorrect. Pass one of the following to the flag '
                  '"--signature_to_run_for"')
        for key in signatures:
            log.error(f" #> Signature key: {key}")
        raise InitFailed()
    log.info(f"Using signature: {signature_key}")
    subgraph_index = int(interpreter._interpreter.GetSubgraphIndexFromSignature(signature_key))
    inputs = [int(i) for i in signatures[signature_key]["inputs"].values()]
    return subgraph_index, inputs


def _parse_input_layers(params: Params) -> list[tuple[str, list[int]]]:
    names = [n for n in params["input_layer"].split(",")] if params["input_layer"] else []
    shapes = params["input_layer_shape"].split(":") if params["input_layer_shape"] else []
    if len(names) != len(shapes):
        log.error(f"The number of items in --input_layer_shape ({params['input_layer_shape']}, with "
                  f"{len(shapes)} items) must match the number of items in --input_layer "
                  f"({params['input_layer']}, with {len(names)} items). For example "
                  "--input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20")
        raise InitFailed()
    layers = []
    for name, shape in zip(names, shapes):
        dims = [int(d) for d in shape.split(",") if d != ""]
        if any(d == -1 for d in dims):
            log.error("Any unknown sizes in the shapes (-1's) must be replaced with the size you "
                      "want to benchmark with.")
            raise InitFailed()
        layers.append((name, dims))
    return layers


def validate_input_layers(params: Params) -> list[tuple[str, list[int]]]:
    """Part of ValidateParams(): done before anything is loaded, like the real tool."""
    return _parse_input_layers(params)


def resize_inputs(interpreter: Interpreter, subgraph_index: int, input_indices: list[int],
                  layers: list[tuple[str, list[int]]]) -> None:
    if not layers:
        return
    wrapper = interpreter._interpreter
    if len(layers) != len(input_indices):
        log.error(f"Inputs mismatch: Model inputs #:{len(layers)} expected: {len(input_indices)}")
        raise InitFailed()
    for (name, dims), index in zip(layers, input_indices):
        tensor_name = wrapper.TensorName(index, subgraph_index)
        if name != tensor_name:
            log.warn(f"Tensor # {index} is named {tensor_name} but flags call it {name}")
        current = wrapper.TensorSize(index, subgraph_index)
        if len(dims) != len(current):
            log.error(f"Input tensor #{index} should have {len(current)} dimensions!")
            raise InitFailed()
    for (_, dims), index in zip(layers, input_indices):
        wrapper.ResizeInputTensor(index, np.array(dims, dtype=np.int32), False, subgraph_index)


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


def random_inputs(session: ModelSession) -> None:
    """CreateRandomTensorData with GetDataRangesForType's ranges (float [-0.5, 0.5], int32/64
    [0, 99], uint8 [0, 254], int8 [-127, 127], bool {0, 1}; other types 0)."""
    rng = np.random.default_rng()
    wrapper = session.interpreter._interpreter
    values = []
    for index in session.input_indices:
        shape = tuple(int(d) for d in wrapper.TensorSize(index, session.subgraph_index))
        dtype = np.dtype(wrapper.TensorType(index, session.subgraph_index))
        if dtype.kind == "f" or dtype.kind == "c":
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
