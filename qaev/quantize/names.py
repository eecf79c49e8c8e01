"""Short internal names for exported files: names can take more bytes than low-bit weights."""
from __future__ import annotations

import onnx

__all__ = ["compact_names"]


def _has_subgraph(graph: onnx.GraphProto) -> bool:
    return any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for node in graph.node for a in node.attribute)


def compact_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose internal tensors are named by short counters and whose
    nodes and doc strings are blank; graph inputs and outputs keep their names, so the
    model is fed and read as before and computes the same.

    A model with control flow (If/Loop/Scan bodies, which may read outer names) is
    returned unchanged.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    if _has_subgraph(graph):
        return out
    kept = {v.name for v in graph.input} | {v.name for v in graph.output} | {""}
    names: dict[str, str] = {}
    counter = 0

    def short(name: str) -> str:
        nonlocal counter
        if name in kept:
            return name
        if name not in names:
            while (candidate := format(counter, "x")) in kept:
                counter += 1
            names[name] = candidate
            counter += 1
        return names[name]

    for tensor in graph.initializer:
        tensor.name = short(tensor.name)
        tensor.doc_string = ""
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)
    graph.doc_string = ""
    return out
