"""Weight-only dequantization that ONNX Runtime computes once, when the session loads.

ONNX Runtime keeps ``DequantizeLinear`` nodes on constant weights out of its constant
folding, so that it can fuse them into integer kernels. A weight-only layer (float
activations on both sides) has no integer kernel to fuse into: the runtime dequantizes its
weight on every run, or fuses the group into a ``MatMulNBits`` that unpacks the weight on
every run (measured on all-MiniLM-L6-v2: its 3-bit weight-only model ran at 0.2-0.7x
float's speed). :func:`folded_weight` writes the same dequantization as plain arithmetic on
constants, ``Cast(q) [- Cast(zero_point)] * scale``, which the runtime's constant folding
evaluates when the session loads; the layer then runs as a float layer. The values are
``DequantizeLinear``'s to the bit: both integers are exact in float32, so is their
difference, and only the product rounds, once, as in ``DequantizeLinear``.

The file keeps the integer weight (the exporter narrows it to INT4/INT2 or bit planes:
:func:`weight_source` finds the tensors to narrow); block-wise scales and zero points are
spread over their blocks by a ``Gather`` with a constant index, folded with the rest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.weights import QuantizedWeight

__all__ = ["folded_weight", "weight_source", "WeightSource"]

_CAST_Q, _CAST_ZERO = "CastQ", "CastZero"  # endings of the node names


def _group_view(values: np.ndarray, ndim: int, axis: int | None, block: int | None) -> np.ndarray:
    """Per-group values in a shape that broadcasts against the weight: per-tensor as
    stored, per-axis with every other axis of length 1, block-wise as stored (spread by
    :func:`_spread`)."""
    if axis is None or block is not None:
        return values
    view = [1] * ndim
    view[axis] = -1
    return values.reshape(view)


def _spread(ed: GraphEditor, tensor: str, qw: QuantizedWeight, *, name: str) -> str:
    """Block-wise ``tensor`` (float) repeated over its blocks along ``qw.axis``, cut to the
    weight's length there."""
    axis, block, length = qw.axis, qw.block_size, qw.q.shape[qw.axis]
    index = ed.shared_init(f"block_index{length}_{block}",
                           lambda: (np.arange(length) // block).astype(np.int32))
    out = ed.fresh(f"{name}.spread")
    ed.add_node("Gather", [tensor, index], [out], name=f"{name}.Spread", axis=axis)
    return out


def folded_weight(ed: GraphEditor, prefix: str, qw: QuantizedWeight) -> str:
    """Add ``qw`` as integer initializers and the constant arithmetic that dequantizes it;
    returns the float32 weight tensor's name.

    Args:
        ed: the graph being built.
        prefix: names of what is added start so (``{prefix}.q``, ``{prefix}.scale``,
            ``{prefix}.zp``; nodes ``{prefix}.CastQ`` and ``{prefix}.CastZero``).
        qw: the quantized weight, any granularity.
    """
    ndim = qw.q.ndim
    values = ed.fresh(f"{prefix}.values")
    ed.add_node("Cast", [ed.add_init(f"{prefix}.q", qw.q)], [values], name=f"{prefix}.{_CAST_Q}",
                to=onnx.TensorProto.FLOAT)
    if np.any(qw.zero_point != 0):
        zp = _group_view(qw.zero_point, ndim, qw.axis, qw.block_size)
        zero = ed.fresh(f"{prefix}.zero")
        ed.add_node("Cast", [ed.add_init(f"{prefix}.zp", zp)], [zero], name=f"{prefix}.{_CAST_ZERO}",
                    to=onnx.TensorProto.FLOAT)
        if qw.block_size is not None:
            zero = _spread(ed, zero, qw, name=f"{prefix}.zero")
        centred = ed.fresh(f"{prefix}.centred")
        ed.add_node("Sub", [values, zero], [centred], name=f"{prefix}.Sub")
        values = centred
    scale = ed.add_init(f"{prefix}.scale", _group_view(qw.scale.astype(np.float32), ndim, qw.axis, qw.block_size))
    if qw.block_size is not None:
        scale = _spread(ed, scale, qw, name=f"{prefix}.scale")
    out = ed.fresh(f"{prefix}.dq")
    ed.add_node("Mul", [values, scale], [out], name=f"{prefix}.Mul")
    return out


@dataclass(frozen=True)
class WeightSource:
    """Where a built graph reads a quantized weight's integers.

    Attributes:
        node: the node reading them (``DequantizeLinear`` or the folded form's ``Cast``).
        folded: whether the weight is in the folded form (:func:`folded_weight`).
        zero_point: the integer zero-point initializer, or None (folded, symmetric).
    """

    node: onnx.NodeProto
    folded: bool
    zero_point: str | None

    @property
    def values(self) -> str:
        """The integer weight initializer (input 0 of :attr:`node`)."""
        return self.node.input[0]


def _made_by(ed: GraphEditor, tensor: str, op_type: str, layer: str) -> onnx.NodeProto:
    node = ed.producer(tensor)
    if node is None or node.op_type != op_type:
        found = "a graph input or initializer" if node is None else f"a {node.op_type}"
        raise RuntimeError(f"export: the weight of layer {layer!r} is not dequantized as built: {tensor!r} comes "
                           f"from {found}, expected a {op_type}")
    return node


def weight_source(ed: GraphEditor, tensor: str, *, layer: str) -> WeightSource:
    """The :class:`WeightSource` of the weight tensor ``tensor`` of ``layer``, added by
    :func:`folded_weight` or as a ``DequantizeLinear``; found by the graph's edges, not by
    node names (which the editor makes unique, so they may carry a suffix)."""
    last = ed.producer(tensor)
    if last is not None and last.op_type == "DequantizeLinear":
        return WeightSource(node=last, folded=False, zero_point=last.input[2] if len(last.input) > 2 else None)
    values = _made_by(ed, tensor, "Mul", layer).input[0]
    centred = ed.producer(values)
    if centred is None or centred.op_type != "Sub":
        return WeightSource(node=_made_by(ed, values, "Cast", layer), folded=True, zero_point=None)
    spread = ed.producer(centred.input[1])  # block-wise: the zero points spread over their blocks
    zero = _made_by(ed, spread.input[0] if spread is not None and spread.op_type == "Gather" else centred.input[1],
                    "Cast", layer)
    return WeightSource(node=_made_by(ed, centred.input[0], "Cast", layer), folded=True, zero_point=zero.input[0])
