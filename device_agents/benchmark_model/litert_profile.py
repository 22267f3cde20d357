"""LiteRT's `--use_profiler=true` summary (`LiteRtProfileSummarizer::GetOutputString`,
google-ai-edge/LiteRT litert/runtime/profiler_summarizer.cc), over per-operator times measured
for real as the classic tool's op profile measures them (op_profile.py: each operator run on its
own on the real intermediate tensors of one full inference, after the timed phase).

Sections as the source prints them: Run Order and Top by Computation Time (`%60s %10.3f ...`,
node names `[Builtin]:<index>`), Number of nodes executed, Summary by node type, then
`Timings (microseconds): count=N curr=T`, `Memory (bytes): count=0`, `N nodes observed`.
"""
from dataclasses import dataclass

from device_agents.benchmark_model.op_profile import MIN_PROFILING_BUDGET_S, build_runners, run_profile

ROW = "%60s %10.3f %10.3f %10.3f %9.3f%% %9.3f%% %10.3f %14d   %s\n"
COLUMNS = ("%60s %10s %10s %10s %10s %10s %10s %14s   %s\n"
           % ("[node type]", "[start]", "[first]", "[avg ms]", "[%]", "[cdf%]", "[mem KB]",
              "[times called]", "[Name]"))


@dataclass
class _ReferenceSession:
    """What op_profile needs of a session: the subgraph and the input tensors' values."""

    subgraph_index: int
    input_indices: list[int]
    input_values: list


def _reference_session(host_graph: str, signature: str, values: dict) -> _ReferenceSession:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=host_graph)
    signatures = interpreter._get_full_signature_list()
    inputs = signatures.get(signature, {}).get("inputs", {}) if signatures else {}
    subgraph = int(interpreter._interpreter.GetSubgraphIndexFromSignature(signature)) if inputs else 0
    names = [name for name in values if name in inputs]
    return _ReferenceSession(subgraph, [int(inputs[name]) for name in names],
                             [values[name] for name in names])


def _header(title: str, width: int) -> str:
    label = f" {title} "
    remaining = max(0, width - len(label))
    left = remaining // 2
    return "=" * left + label + "=" * (remaining - left) + "\n"


def profile_summary(params, host_graph: str, signature: str, input_values: dict,
                    timed_runs: int) -> str:
    reference = _reference_session(host_graph, signature, input_values)
    runners = build_runners(params, host_graph, reference)
    stats = run_profile(runners, timed_runs, max(MIN_PROFILING_BUDGET_S, float(params["min_secs"])))
    nodes = sorted(stats.details.values(), key=lambda d: d.run_order)
    total_us = sum(node.elapsed_us.sum for node in nodes)
    safe_total = float(total_us) if total_us > 0 else 1.0
    # The first run ran the nodes back to back: each one started when the ones before it ended.
    starts, clock = {}, 0
    for node in nodes:
        starts[node.name] = clock
        clock += node.elapsed_us.first

    def rows(ordered) -> str:
        out, cdf = [], 0.0
        for node in ordered:
            cdf += node.elapsed_us.sum
            count = node.elapsed_us.count
            out.append(ROW % (node.type, starts[node.name] / 1000.0, node.elapsed_us.first / 1000.0,
                              node.elapsed_us.sum / count / 1000.0,
                              node.elapsed_us.sum / safe_total * 100.0, cdf / safe_total * 100.0,
                              0.0, count, f"[Builtin]:{node.name.rsplit(':', 1)[-1]}"))
        return "".join(out)

    by_type: dict[str, list] = {}
    for node in nodes:
        by_type.setdefault(node.type, []).append(node)
    summary, cdf = [], 0.0
    for node_type, members in sorted(by_type.items(),
                                     key=lambda item: -sum(n.elapsed_us.sum for n in item[1])):
        type_us = sum(n.elapsed_us.sum for n in members)
        calls = sum(n.elapsed_us.count for n in members)
        cdf += type_us
        summary.append("%60s %10d %10.3f %9.3f%% %9.3f%% %10.3f %14d\n" % (
            node_type, len(members), type_us / calls / 1000.0, type_us / safe_total * 100.0,
            cdf / safe_total * 100.0, 0.0, calls))
    by_time = sorted(nodes, key=lambda n: -n.elapsed_us.sum)  # stable, as absl::c_stable_sort
    return "".join([
        _header("Run Order", 150), COLUMNS, rows(nodes),
        "\n", _header("Top by Computation Time", 150), COLUMNS, rows(by_time),
        f"\nNumber of nodes executed: {len(nodes)}\n",
        "\n", _header("Summary by node type", 130),
        "%60s %10s %10s %10s %10s %10s %14s\n" % ("[Node type]", "[count]", "[avg ms]", "[avg %]",
                                                 "[cdf %]", "[mem KB]", "[times called]"),
        *summary,
        f"\nTimings (microseconds): count={len(nodes)} curr={total_us}\n",
        "Memory (bytes): count=0\n",
        f"{len(nodes)} nodes observed\n",
    ])
