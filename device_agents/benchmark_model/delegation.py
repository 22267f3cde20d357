"""What the XNNPACK delegate did to the graph, read back from the interpreter.

The Python API does not expose the execution plan, but it does expose every node of subgraph 0:
before AllocateTensors the default delegate has not been applied yet (LiteRT applies it lazily)
and the node list holds the model's Y operators; after it, one DELEGATE node per partition is
appended (K = new nodes). The operators a partition replaced (X) are found by walking back from
the partition node's outputs through the original operators until its inputs are reached: these
are exactly the operators whose work the delegate kernel took over.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class DelegationReport:
    total_nodes: int  # Y: operators in the model's primary subgraph
    replaced_nodes: int  # X: operators taken over by delegate kernels
    partitions: int  # K: delegate kernels (DELEGATE nodes)

    @property
    def fully_delegated(self) -> bool:
        # The real tool: exactly one delegate kernel and nothing else in the execution plan.
        return self.partitions == 1 and self.replaced_nodes == self.total_nodes

    def verbose_line(self, delegate_name: str) -> str:
        return (f"Replacing {self.replaced_nodes} out of {self.total_nodes} node(s) with delegate "
                f"({delegate_name}) node, yielding {self.partitions} partitions for subgraph 0.")


def _node_tensors(wrapper, node_index: int, outputs: bool) -> list[int]:
    ids = wrapper.NodeOutputs(node_index) if outputs else wrapper.NodeInputs(node_index)
    return [int(t) for t in ids if int(t) >= 0]


def delegation_report(wrapper, original_node_count: int) -> DelegationReport:
    node_count = wrapper.NumNodes()
    producer = {}
    for node in range(original_node_count):
        for tensor in _node_tensors(wrapper, node, outputs=True):
            producer[tensor] = node
    replaced: set[int] = set()
    partitions = 0
    for node in range(original_node_count, node_count):
        partitions += 1
        boundary = set(_node_tensors(wrapper, node, outputs=False))
        pending = list(_node_tensors(wrapper, node, outputs=True))
        seen_tensors: set[int] = set()
        while pending:
            tensor = pending.pop()
            if tensor in seen_tensors or tensor in boundary:
                continue
            seen_tensors.add(tensor)
            source = producer.get(tensor)
            if source is None or source in replaced:
                continue
            replaced.add(source)
            pending.extend(_node_tensors(wrapper, source, outputs=False))
    return DelegationReport(original_node_count, len(replaced), partitions)
