"""Cross-layer equalization of depthwise -> pointwise convolution pairs.

For a Conv ``y = W1 x + b1`` followed (optionally through a ``Relu``) by a Conv reading only
``y``, scaling output channel ``i`` of the first by ``1/s_i`` and input channel ``i`` of the
second by ``s_i`` leaves the function unchanged (ReLU is positively homogeneous). Choosing
``s_i = sqrt(r1_i / r2_i)``, with ``r1_i`` and ``r2_i`` the weight ranges of the two
channels, makes both channel ranges ``sqrt(r1_i r2_i)``, which evens out the per-tensor and
per-channel weight grids (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019, Sec. 4.1). ``Clip`` (ReLU6) is not
homogeneous, so pairs joined by it are left alone.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["equalize_pairs"]


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def equalize_pairs(model: onnx.ModelProto, *, depthwise_only: bool = True,
                   eps: float = 1e-8) -> tuple[onnx.ModelProto, list]:
    """Equalize every eligible Conv -> (Relu ->) Conv pair of ``model``.

    Args:
        model: the float model (not modified).
        depthwise_only: only pairs whose first Conv is depthwise (the case that needs it).
        eps: channels whose range is below this are left unscaled.

    Returns:
        The equalized copy and the ``(first, second)`` node names that were equalized.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    consumers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    uses = {name: len(nodes) for name, nodes in consumers.items()}
    graph_outputs = {o.name for o in g.output}
    done = []
    for first in g.node:
        second = _pair(first, inits, consumers, graph_outputs, depthwise_only=depthwise_only)
        if second is None:
            continue
        names = [first.input[1], second.input[1]] + (
            [first.input[2]] if len(first.input) > 2 and first.input[2] else [])
        if any(n not in inits or uses.get(n, 0) != 1 for n in names):
            continue  # shared or non-constant parameters
        _rescale(first, second, inits, eps=eps)
        done.append((first.name, second.name))
    return out, done


def _pair(first, inits, consumers, graph_outputs, *, depthwise_only: bool):
    """The Conv that ``first`` (a Conv with a constant weight) feeds alone, directly or
    through one Relu, or None."""
    if first.op_type != "Conv" or len(first.input) < 2 or first.input[1] not in inits:
        return None
    w1 = inits[first.input[1]]
    group = int(_attr(first, "group", 1))
    if depthwise_only and not (group > 1 and w1.dims[1] == 1 and group == w1.dims[0]):
        return None
    tensor = first.output[0]
    chain = consumers.get(tensor, [])
    if len(chain) != 1 or tensor in graph_outputs:
        return None
    second = chain[0]
    if second.op_type == "Relu":
        tensor = second.output[0]
        chain = consumers.get(tensor, [])
        if len(chain) != 1 or tensor in graph_outputs:
            return None
        second = chain[0]
    if (second.op_type != "Conv" or second.input[0] != tensor or second.input[1] not in inits
            or int(_attr(second, "group", 1)) != 1):
        return None
    return second


def _rescale(first, second, inits, *, eps: float) -> None:
    """Scale ``first``'s output channels down and ``second``'s input channels up by the
    square root of their range ratio (the product is unchanged)."""
    w1 = numpy_helper.to_array(inits[first.input[1]]).astype(np.float64)
    w2 = numpy_helper.to_array(inits[second.input[1]]).astype(np.float64)
    r1 = np.abs(w1).reshape(w1.shape[0], -1).max(axis=1)
    r2 = np.abs(w2).transpose(1, 0, *range(2, w2.ndim)).reshape(w2.shape[1], -1).max(axis=1)
    scale = np.where((r1 > eps) & (r2 > eps), np.sqrt(r1 / np.maximum(r2, eps)), 1.0)
    view1 = (-1,) + (1,) * (w1.ndim - 1)
    view2 = (1, -1) + (1,) * (w2.ndim - 2)
    updates = {first.input[1]: w1 / scale.reshape(view1), second.input[1]: w2 * scale.reshape(view2)}
    if len(first.input) > 2 and first.input[2]:
        updates[first.input[2]] = numpy_helper.to_array(inits[first.input[2]]).astype(np.float64) / scale
    for name, value in updates.items():
        inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
