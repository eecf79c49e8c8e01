"""Names that If/Loop/Scan bodies read from the graphs around them.

A body may read any tensor of an enclosing graph by name without listing it as an input of
its node; such implicit inputs are edges all the same: a graph editor must keep the tensors
(and initializers) they name, order their producers first, and never reuse their names.
"""
from __future__ import annotations

from typing import Iterator

import onnx

__all__ = ["subgraphs", "outer_reads", "has_subgraph", "all_names"]


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held in ``node``'s attributes (If branches, Loop and Scan bodies)."""
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def has_subgraph(node: onnx.NodeProto) -> bool:
    """Whether ``node`` holds a graph (control flow)."""
    return any(True for _ in subgraphs(node))


def _defined(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input} | {i.name for i in graph.initializer}
    names |= {s.values.name for s in graph.sparse_initializer}
    return names | {out for node in graph.node for out in node.output}


def _graph_reads(graph: onnx.GraphProto) -> set[str]:
    defined = _defined(graph)
    used = {name for node in graph.node for name in node.input if name}
    used |= {name for node in graph.node for name in outer_reads(node)}
    used |= {v.name for v in graph.output}
    return used - defined


def outer_reads(node: onnx.NodeProto) -> set[str]:
    """Names ``node``'s bodies read from enclosing graphs (its implicit inputs)."""
    names: set[str] = set()
    for graph in subgraphs(node):
        names |= _graph_reads(graph)
    return names


def all_names(graph: onnx.GraphProto) -> set[str]:
    """Every node and tensor name of ``graph`` and of the bodies inside it, at any depth."""
    names = {v.name for v in (*graph.input, *graph.output, *graph.value_info)}
    names |= {i.name for i in graph.initializer} | {s.values.name for s in graph.sparse_initializer}
    for node in graph.node:
        names |= {node.name, *node.input, *node.output}
        for body in subgraphs(node):
            names |= all_names(body)
    return names - {""}
