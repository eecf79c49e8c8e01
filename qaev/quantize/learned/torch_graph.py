"""Running an ONNX graph, or the part of it between chosen tensors, with PyTorch ops.

Block reconstruction trains the rounding of a block's weights and its activation step
sizes by gradient descent, so the block must run in a framework with autograd. This is a
small interpreter: the graph's nodes, in their (topological) order, each mapped to the
PyTorch function of :data:`qaev.quantize.learned.torch_ops.OPS`. Two hooks make a block trainable:
``weights`` replaces initializers (e.g. by soft-rounded weights) and ``act`` sees every
tensor as it is produced (e.g. to fake-quantize an activation).

Why our own interpreter and not onnx2torch: measured in ``benchmarks/learned_rounding.py
--interpreter`` (Lite0 and MiniLM against ONNX Runtime; see benchmarks/RESULTS.md).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qaev.errors import ModelError
from qaev.quantize.learned._torch import require_torch
from qaev.quantize.learned.torch_ops import OPS

__all__ = ["TorchGraph", "run_onnx", "unsupported_ops"]

#: ``act(tensor_name, value) -> value``: called on every fed and produced tensor.
ActHook = Callable[[str, object], object]


@dataclass(frozen=True)
class _Node:
    name: str
    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict


def unsupported_ops(proto: onnx.ModelProto) -> list[str]:
    """Operator types of ``proto`` this interpreter cannot run (sorted, each once)."""
    return sorted({n.op_type for n in proto.graph.node if n.op_type not in OPS or n.domain not in ("", "ai.onnx")})


def _select(nodes: Sequence[onnx.NodeProto], fed: set[str], outputs: Sequence[str], constants: set[str]) -> list:
    """The nodes needed to compute ``outputs`` from ``fed`` tensors and constants, in graph order."""
    producer = {out: i for i, n in enumerate(nodes) for out in n.output if out}
    needed: set[int] = set()
    stack = [t for t in outputs if t not in fed]
    while stack:
        tensor = stack.pop()
        if tensor in fed or tensor in constants or not tensor:
            continue
        if tensor not in producer:
            raise ModelError(f"tensor {tensor!r} is neither fed, a constant nor produced by the graph")
        i = producer[tensor]
        if i not in needed:
            needed.add(i)
            stack.extend(nodes[i].input)
    return [nodes[i] for i in sorted(needed)]


class TorchGraph:
    """An ONNX graph, or its nodes between ``inputs`` and ``outputs``, as PyTorch ops.

    Args:
        proto: the model.
        inputs: tensors fed to :meth:`run` (default: the graph's inputs).
        outputs: tensors :meth:`run` returns (default: the graph's outputs).

    Raises:
        ModelError: an operator without a PyTorch version, or an output that cannot be
            computed from ``inputs`` and the initializers.

    Example:
        >>> from qaev.data import digits_model_path
        >>> g = TorchGraph(onnx.load(digits_model_path()))
        >>> g.inputs, len(g.nodes)
        (('input',), 11)
    """

    def __init__(self, proto: onnx.ModelProto, *, inputs: Sequence[str] | None = None,
                 outputs: Sequence[str] | None = None) -> None:
        torch = require_torch()
        graph = proto.graph
        inits = {i.name: i for i in graph.initializer}
        self.inputs = tuple(inputs) if inputs is not None else tuple(v.name for v in graph.input if v.name not in inits)
        self.outputs = tuple(outputs) if outputs is not None else tuple(v.name for v in graph.output)
        chosen = _select(list(graph.node), set(self.inputs), self.outputs, set(inits))
        missing = sorted({n.op_type for n in chosen if n.op_type not in OPS})
        if missing:
            raise ModelError(f"no PyTorch version of operator(s) {', '.join(missing)}")
        self.nodes = tuple(_Node(n.name, n.op_type, tuple(n.input), tuple(n.output),
                                 {a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in chosen)
        used = {t for n in self.nodes for t in n.inputs}
        self.constants = {name: torch.from_numpy(np.array(numpy_helper.to_array(inits[name])))
                          for name in used if name in inits}
        last: dict[str, int] = {}
        for i, n in enumerate(self.nodes):
            for t in n.inputs:
                last[t] = i
        keep = set(self.outputs)
        self._free = [[t for t in n.inputs if last.get(t) == i and t not in keep and t not in self.constants]
                      for i, n in enumerate(self.nodes)]

    @property
    def initializers(self) -> list[str]:
        """Names of the initializers the selected nodes read."""
        return list(self.constants)

    def run(self, feeds: Mapping[str, object], *, weights: Mapping[str, object] | None = None,
            act: ActHook | None = None, keep: Sequence[str] = ()) -> dict[str, object]:
        """Run on torch tensors.

        Args:
            feeds: a tensor for every name in ``inputs``.
            weights: replacements for initializers (same shapes).
            act: called as ``act(name, value)`` on every fed and produced tensor; its
                return value is what the graph goes on with.
            keep: further tensors to return besides ``outputs``.

        Returns:
            tensor name -> value for ``outputs`` and ``keep``.
        """
        values = dict(self.constants)
        if weights:
            values.update(weights)
        for name in self.inputs:
            try:
                values[name] = feeds[name] if act is None else act(name, feeds[name])
            except KeyError:
                raise ModelError(f"no value fed for graph input {name!r}") from None
        kept = set(keep)
        for i, node in enumerate(self.nodes):
            args = [values[t] if t else None for t in node.inputs]
            try:
                out = OPS[node.op_type](node.attrs, args)
            except (RuntimeError, ValueError, IndexError, KeyError, TypeError) as exc:
                raise ModelError(f"{node.op_type} node {node.name!r}: {exc}") from None
            outs = out if isinstance(out, tuple) else (out,)
            for name, value in zip(node.outputs, outs):
                values[name] = value if act is None else act(name, value)
            for t in self._free[i]:
                if t not in kept:
                    values.pop(t, None)
        return {t: values[t] for t in (*self.outputs, *keep)}


def run_onnx(proto: onnx.ModelProto, feeds: Mapping[str, np.ndarray], *,
             outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run ``proto`` on numpy ``feeds`` with PyTorch (no gradients); numpy outputs by name."""
    torch = require_torch()
    graph = TorchGraph(proto, inputs=list(feeds), outputs=outputs)
    with torch.no_grad():
        out = graph.run({k: torch.from_numpy(np.array(v)) for k, v in feeds.items()})
    return {k: v.numpy() for k, v in out.items()}
