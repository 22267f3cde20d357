"""--enable_op_profiling=true: per-operator timings, measured for real.

The LiteRT Python API has no per-op profiler, so each operator is timed on its own: the model is
cut into single-operator models (flatbuffer_utils / schema_py_generated: same operator, same
options, same constant buffers), each run by its own interpreter with the same thread count and
the same XNNPACK setting as the benchmark, fed with the real intermediate tensors of one full
inference (captured with experimental_preserve_all_tensors=True on the same random inputs).
A profiled "run" invokes every single-op interpreter once in model order; only the Invoke is
timed. This happens after the timed phase (it never perturbs it), for as many runs as the timed
phase had, stopping early once it has taken max(1 s, --min_secs).

Rows show each operator under its builtin name, also where XNNPACK fuses them into one delegate
kernel in the full graph (the real tool would show one TfLiteXNNPackDelegate row there); each
single-op time includes one Invoke's fixed overhead. The init table has one row, AllocateTensors,
the measured AllocateTensors of the benchmark (it includes applying the XNNPACK delegate, which
the LiteRT runtime does lazily inside AllocateTensors).
"""
import copy
import time
from dataclasses import dataclass

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from device_agents.benchmark_model import log
from device_agents.benchmark_model.native_stderr import capture_native_stderr
from device_agents.benchmark_model.profile_tables import StatsCalculator

MIN_PROFILING_BUDGET_S = 1.0


@dataclass
class SingleOpRunner:
    node_index: int
    op_type: str
    name_in_stats: str
    interpreter: Interpreter
    inputs: list[tuple[int, np.ndarray]]  # (tensor index in the single-op model, value)

    def set_inputs(self) -> None:
        for index, value in self.inputs:
            self.interpreter._interpreter.SetTensor(index, value, 0)

    def invoke_us(self) -> int:
        wrapper = self.interpreter._interpreter
        start = time.monotonic_ns()
        wrapper.Invoke(0)
        return (time.monotonic_ns() - start) // 1000


def _capture_all_tensors(host_graph, session) -> Interpreter:
    reference = Interpreter(model_path=host_graph, experimental_preserve_all_tensors=True,
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    wrapper = reference._interpreter
    wrapper.AllocateTensors(session.subgraph_index)
    for index, value in zip(session.input_indices, session.input_values):
        wrapper.SetTensor(index, value, session.subgraph_index)
    wrapper.Invoke(session.subgraph_index)
    return reference


def _has_data(buffer) -> bool:
    return buffer is not None and buffer.data is not None and len(buffer.data) > 0


def _single_op_model(schema, model, subgraph, op):
    """A model whose only subgraph runs `op`: its non-constant inputs become graph inputs."""
    used = []
    for tensor in list(op.inputs or []) + list(op.outputs or []) + list(op.intermediates or []):
        if tensor >= 0 and tensor not in used:
            used.append(tensor)
    remap = {old: new for new, old in enumerate(used)}
    buffers = [schema.BufferT()]
    tensors = []
    graph_inputs = []
    for old in used:
        tensor = copy.copy(subgraph.tensors[old])
        source = model.buffers[tensor.buffer] if 0 <= tensor.buffer < len(model.buffers) else None
        if _has_data(source):
            buffers.append(source)
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
            if old in (op.inputs or []):
                graph_inputs.append(old)
        tensors.append(tensor)
    new_op = copy.copy(op)
    new_op.inputs = [remap[t] if t >= 0 else -1 for t in (op.inputs or [])]
    new_op.outputs = [remap[t] for t in (op.outputs or [])]
    if op.intermediates is not None:
        new_op.intermediates = [remap[t] for t in op.intermediates]
    new_subgraph = schema.SubGraphT()
    new_subgraph.tensors = tensors
    new_subgraph.inputs = [remap[t] for t in graph_inputs]
    new_subgraph.outputs = list(new_op.outputs)
    new_subgraph.operators = [new_op]
    new_subgraph.name = subgraph.name
    new_model = schema.ModelT()
    new_model.version = model.version
    new_model.operatorCodes = model.operatorCodes
    new_model.description = model.description
    new_model.subgraphs = [new_subgraph]
    new_model.buffers = buffers
    return new_model, graph_inputs


def build_runners(params, host_graph, session) -> list[SingleOpRunner]:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    with open(host_graph, "rb") as model_file:
        model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_file.read()))
    subgraph = model.subgraphs[session.subgraph_index]
    reference = _capture_all_tensors(host_graph, session)
    ref_wrapper = reference._interpreter
    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                if params.was_set("use_xnnpack") and not params["use_xnnpack"] else OpResolverType.AUTO)
    threads = params["num_threads"] if params["num_threads"] >= 1 else None
    runners = []
    for node_index, op in enumerate(subgraph.operators):
        op_type = ref_wrapper.NodeName(node_index) if session.subgraph_index == 0 else str(op.opcodeIndex)
        outputs = [subgraph.tensors[t].name for t in (op.outputs or []) if t >= 0]
        names = ", ".join(n.decode() if isinstance(n, bytes) else str(n) for n in outputs)
        name_in_stats = f"[{names}]:{node_index}"
        try:
            single, graph_inputs = _single_op_model(schema, model, subgraph, op)
            content = bytes(flatbuffer_utils.convert_object_to_bytearray(single))
            with capture_native_stderr():
                interpreter = Interpreter(model_content=content, num_threads=threads,
                                          experimental_op_resolver_type=resolver)
                interpreter._interpreter.AllocateTensors(0)
            values = [(position, np.array(ref_wrapper.GetTensor(old, session.subgraph_index)))
                      for position, old in enumerate(graph_inputs)]
            input_indices = [int(i) for i in interpreter._interpreter.InputIndices()]
            runner = SingleOpRunner(node_index, op_type, name_in_stats, interpreter,
                                    [(input_indices[p], v) for p, v in values])
            runner.set_inputs()
            with capture_native_stderr():
                runner.interpreter._interpreter.Invoke(0)
        except Exception as exc:  # an operator that cannot run alone is left out, loudly
            log.warn(f"Op profiling: node {node_index} ({op_type}) cannot be timed on its own: "
                     f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
            continue
        runners.append(runner)
    return runners


def run_profile(runners: list[SingleOpRunner], runs: int, budget_s: float) -> StatsCalculator:
    calculator = StatsCalculator()
    deadline = time.monotonic() + budget_s
    for _ in range(max(runs, 1)):
        total_us = 0
        for run_order, runner in enumerate(runners):
            runner.set_inputs()
            elapsed_us = runner.invoke_us()
            total_us += elapsed_us
            calculator.add_node_stats(runner.name_in_stats, runner.op_type, run_order, elapsed_us, 0)
        calculator.run_total_us.update(total_us)
        if time.monotonic() > deadline:
            break
    return calculator


def _init_profile(session) -> StatsCalculator:
    calculator = StatsCalculator()
    calculator.add_node_stats("AllocateTensors/0", "AllocateTensors", 0, session.allocate_us,
                              max(session.allocate_footprint_kb, 0) * 1000)
    calculator.run_total_us.update(session.allocate_us)
    return calculator


def report_op_profile(params, host_graph: str, session, timed_runs: int) -> None:
    runners = build_runners(params, host_graph, session)
    budget_s = max(MIN_PROFILING_BUDGET_S, float(params["min_secs"]))
    run_stats = run_profile(runners, timed_runs, budget_s)
    init_profile = _init_profile(session)
    mode = params["op_profiling_output_mode"]
    if mode == "proto":
        log.warn("Op profiling output mode 'proto' is not supported by this device; "
                 "printing the profile as text.")
    as_csv = mode == "csv" or bool(params["profiling_output_csv_file"])
    init_profile.format_as_csv = run_stats.format_as_csv = as_csv
    init_text = "Profiling Info for Benchmark Initialization:\n" + init_profile.report()
    run_text = "Operator-wise Profiling Info for Regular Benchmark Runs:\n" + run_stats.report()
    output_file = params["op_profiling_output_file"] or params["profiling_output_csv_file"]
    if output_file:
        from device_agents.benchmark_model.device_paths import host_path
        try:
            with open(host_path(output_file), "w") as out:
                out.write(init_text + run_text)
            return
        except (OSError, ValueError):
            pass  # HandleOutput falls back to the log when the file cannot be opened
    # In current builds each block is one INFO message: one prefix, then the table lines.
    log.info(init_text)
    log.info(run_text)
