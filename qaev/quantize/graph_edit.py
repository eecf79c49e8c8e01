"""A small editor over a copied ONNX graph: unique names, node insertion, rewiring, and a
stable topological sort when done.

Names it makes are unique against every node and tensor name of the model, bodies of
If/Loop/Scan nodes included; rewiring follows edges (the nodes that produce a new tensor
are named by identity, never by a name prefix); and what those bodies read from the main
graph counts as used and as a dependency (:mod:`qaev.model.subgraphs`)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qaev.model.subgraphs import all_names, outer_reads

__all__ = ["GraphEditor"]

_SMALL = 256  # bytes: initializers up to this size are memoised by value (scales, zero points)
_SMALL_PROTOS: dict = {}


def _tensor(name: str, array: np.ndarray) -> onnx.TensorProto:
    """``numpy_helper.from_array``, memoised for small arrays: a search makes the same
    scalar scales and zero points in candidate after candidate."""
    if array.nbytes > _SMALL:
        return numpy_helper.from_array(array, name)
    key = (name, array.dtype.str, array.shape, array.tobytes())
    proto = _SMALL_PROTOS.get(key)
    if proto is None:
        if len(_SMALL_PROTOS) > 100_000:
            _SMALL_PROTOS.clear()
        proto = _SMALL_PROTOS[key] = numpy_helper.from_array(array, name)
    return proto


class GraphEditor:
    """Edits a copy of ``proto``; :meth:`finish` returns the sorted, pruned result."""

    def __init__(self, proto: onnx.ModelProto) -> None:
        self.model = onnx.ModelProto()
        self.model.CopyFrom(proto)
        g = self.model.graph
        self._nodes = list(g.node)
        self._by_name = {n.name: n for n in self._nodes}
        self._names = all_names(g)
        self._new_inits: list[onnx.TensorProto] = []
        self._rewire: dict[str, tuple[str, frozenset]] = {}  # tensor -> (new name, ids of nodes to skip)
        self._shared: dict[str, str] = {}  # key -> initializer name

    def fresh(self, base: str) -> str:
        """A name no node or tensor of the model uses yet (nor anything made here)."""
        name, i = base, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def add_init(self, base: str, array: np.ndarray) -> str:
        """Add an initializer under a fresh name; returns the name."""
        name = self.fresh(base)
        self._new_inits.append(_tensor(name, np.asarray(array)))
        return name

    def shared_init(self, key: str, make) -> str:
        """The initializer for ``key``, added (from ``make()``) the first time only, so
        several nodes read one copy."""
        if key not in self._shared:
            self._shared[key] = self.add_init(key, make())
        return self._shared[key]

    def add_node(self, op_type: str, inputs, outputs, *, name: str, domain: str = "", **attrs) -> onnx.NodeProto:
        """Append a node (order is fixed by :meth:`finish`)."""
        node = helper.make_node(op_type, list(inputs), list(outputs), name=self.fresh(name), domain=domain, **attrs)
        self._nodes.append(node)
        return node

    def node(self, name: str) -> onnx.NodeProto:
        """The original node called ``name``."""
        return self._by_name[name]

    def producer(self, tensor: str) -> onnx.NodeProto | None:
        """The node that produces ``tensor`` now, or None (an input or initializer)."""
        self._apply_rewiring()
        return next((n for n in self._nodes if tensor in n.output), None)

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        """The nodes that read ``tensor`` now (control-flow bodies reading it from outside
        included)."""
        self._apply_rewiring()
        return [n for n in self._nodes if tensor in n.input or tensor in outer_reads(n)]

    def remove(self, node: onnx.NodeProto) -> None:
        """Drop ``node`` from the graph."""
        self._apply_rewiring()
        self._nodes = [n for n in self._nodes if n is not node]

    def rewire_consumers(self, tensor: str, new: str, *, skip: tuple[onnx.NodeProto, ...]) -> None:
        """Make every consumer of ``tensor`` read ``new`` instead, except the nodes in
        ``skip`` (the ones producing ``new`` from ``tensor``). Graph outputs, and bodies of
        control-flow nodes that read ``tensor`` from outside, keep ``tensor``."""
        self._rewire[tensor] = (new, frozenset(id(n) for n in skip))

    def _apply_rewiring(self) -> None:
        if not self._rewire:
            return
        for node in self._nodes:
            for i, name in enumerate(node.input):
                target = self._rewire.get(name)
                if target is not None and id(node) not in target[1]:
                    node.input[i] = target[0]
        self._rewire.clear()

    def is_output(self, tensor: str) -> bool:
        """Whether ``tensor`` is a graph output."""
        return any(o.name == tensor for o in self.model.graph.output)

    def detach_output(self, tensor: str) -> str:
        """Rename the producer's output ``tensor`` to a fresh name read by all consumers, so
        a new node can produce the graph output ``tensor``; returns the fresh name."""
        self._apply_rewiring()
        new = self.fresh(f"{tensor}.float")
        for node in self._nodes:
            for i, name in enumerate(node.output):
                if name == tensor:
                    node.output[i] = new
            for i, name in enumerate(node.input):
                if name == tensor:
                    node.input[i] = new
        return new

    def finish(self) -> onnx.ModelProto:
        """Topologically sorted graph (original order where free) with unused initializers
        removed; the source model's shape records (``value_info``) are kept for the tensors
        still computed (:func:`_keep_value_info`)."""
        self._apply_rewiring()
        g = self.model.graph
        g.initializer.extend(self._new_inits)
        ordered = _toposort(self._nodes, {i.name for i in g.initializer} | {v.name for v in g.input} | {""})
        del g.node[:]
        g.node.extend(ordered)
        used = {name for node in ordered for name in (*node.input, *outer_reads(node))} | {o.name for o in g.output}
        dropped = {i.name for i in g.initializer if i.name not in used}
        keep = [i for i in g.initializer if i.name not in dropped]
        del g.initializer[:]
        g.initializer.extend(keep)
        graph_inputs = [v for v in g.input if v.name not in dropped]
        del g.input[:]
        g.input.extend(graph_inputs)
        _keep_value_info(g, {name for node in ordered for name in node.output})
        return self.model


def _keep_value_info(graph: onnx.GraphProto, computed: set[str]) -> None:
    """Keep the ``value_info`` of tensors still computed, drop the rest.

    Edits never change a kept tensor's type or shape: a replaced node's output keeps its
    name and shape, new tensors get new names. The records matter to ONNX Runtime's
    fusions: without the float model's shapes it cannot tell that the two inputs of a
    residual ``Add`` agree, and leaves ``Add -> LayerNormalization`` unfused where the
    float model runs ``SkipLayerNormalization`` (measured on all-MiniLM-L6-v2: 6 of 13).
    """
    kept = [v for v in graph.value_info if v.name in computed]
    del graph.value_info[:]
    graph.value_info.extend(kept)


def _toposort(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    producer = {out: i for i, node in enumerate(nodes) for out in node.output if out}
    deps = []
    for node in nodes:
        mine = []
        for name in node.input:
            if name in available:
                continue
            if name not in producer:
                raise RuntimeError(f"graph edit left unresolved input {name!r} of {node.name!r}")
            mine.append(producer[name])
        mine += [producer[name] for name in sorted(outer_reads(node)) if name in producer]
        deps.append(mine)
    state = [0] * len(nodes)  # 0 new, 1 on stack, 2 placed
    ordered = []
    for root in range(len(nodes)):
        if state[root] == 2:
            continue
        stack = [root]
        while stack:
            i = stack[-1]
            if state[i] == 2:
                stack.pop()
                continue
            state[i] = 1
            todo = []
            for d in deps[i]:
                if state[d] == 0:
                    todo.append(d)
                elif state[d] == 1 and d != i:
                    raise RuntimeError(f"graph edit created a cycle at node {nodes[i].name!r}")
            if todo:
                stack.extend(todo)
                continue
            state[i] = 2
            ordered.append(nodes[i])
            stack.pop()
    return ordered
