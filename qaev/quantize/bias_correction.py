"""Empirical bias correction of quantized weight layers.

Quantizing ``W`` to ``W_q`` shifts the layer's expected output by ``(W_q - W) E[x]``
(per output channel; ``E[x]`` over a Conv's im2col rows or a MatMul's input rows). Adding
``(W - W_q) E[x]`` to the bias removes that shift (Nagel et al., "Data-Free Quantization
Through Weight Equalization and Bias Correction", ICCV 2019, empirical variant;
Finkelstein et al., "Fighting Quantization Bias With Bias", 2019).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.layer_inputs import InputStats
from qaev.quantize.rounding.groups import to_groups
from qaev.quantize.weights import QuantizedWeight

__all__ = ["output_correction", "apply_correction", "add_after", "add_to_output", "fold_scale", "alpha_beta"]


def output_correction(w: np.ndarray, qw: QuantizedWeight, stats: InputStats, *, layer: LayerInfo) -> np.ndarray:
    """``(W - W_q) E[x]`` per output channel, float64 ``(Cout,)``: what to add to the
    layer's output so its calibration mean matches the float layer's."""
    delta = to_groups(np.asarray(w, np.float64) - qw.dequantize().astype(np.float64), layer, stats.groups)
    return np.einsum("grn,gn->gr", delta, stats.mean).reshape(-1)


def add_after(ed: GraphEditor, node: onnx.NodeProto, correction: np.ndarray, *, name: str) -> None:
    """Add ``correction`` to ``node``'s first output with a new ``Add`` that takes over the
    output's name (call before the node is rewritten)."""
    out = node.output[0]
    raw = ed.fresh(f"{name}.uncorrected")
    node.output[0] = raw
    ed.add_node("Add", [raw, ed.add_init(f"{name}.correction", correction.astype(np.float32))], [out],
                name=f"{name}.BiasCorrection")


def _bias_add(ed: GraphEditor, model: FloatModel, node: onnx.NodeProto, channels: int):
    """The ``Add`` of a constant bias that alone reads ``node``'s output, and the index of
    its constant input, when that constant is read by no other node and is a vector along
    the output's last axis (``(C,)`` or ``(1, ..., C)``, ``C = channels``); else None."""
    out = node.output[0]
    readers = ed.consumers(out)
    if ed.is_output(out) or len(readers) != 1 or readers[0].op_type != "Add" or len(readers[0].input) != 2:
        return None
    add = readers[0]
    slot = 1 - list(add.input).index(out)
    const = add.input[slot]
    if const not in model.initializers or len(ed.consumers(const)) != 1:
        return None
    dims = list(model.initializers[const].dims)
    if not dims or dims[-1] != channels or any(d != 1 for d in dims[:-1]):
        return None
    return add, slot


def add_to_output(ed: GraphEditor, model: FloatModel, node: onnx.NodeProto, correction: np.ndarray, *,
                  name: str) -> None:
    """Add ``correction`` to ``node``'s first output: folded into the constant of the bias
    ``Add`` that follows it where there is one (:func:`_bias_add`: no new node, no new
    vector in the file), else with a new ``Add`` (:func:`add_after`)."""
    found = _bias_add(ed, model, node, int(np.size(correction)))
    if found is None:
        add_after(ed, node, correction, name=name)
        return
    add, slot = found
    old = model.weight(add.input[slot])
    bias = (old.astype(np.float64) + np.asarray(correction, np.float64).reshape(old.shape)).astype(np.float32)
    add.input[slot] = ed.add_init(f"{name}.bias_corrected", bias)


def alpha_beta(layer: LayerInfo, node: onnx.NodeProto) -> tuple[float, float]:
    """A Gemm's ``alpha`` and ``beta`` (1 and 1 for any other layer)."""
    if layer.op_type != "Gemm":
        return 1.0, 1.0
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    return float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))


def fold_scale(model: FloatModel, layer: LayerInfo, node: onnx.NodeProto) -> float | None:
    """The factor a correction takes when folded into ``node``'s constant bias (1 for a
    Conv, ``alpha / beta`` for a Gemm), or None where it cannot be folded (a MatMul, a Gemm
    with ``beta = 0``, a bias computed by the graph)."""
    if layer.op_type == "MatMul":
        return None
    alpha, beta = alpha_beta(layer, node)
    if beta == 0.0 or (len(node.input) > 2 and node.input[2] and node.input[2] not in model.initializers):
        return None
    return alpha / beta


def apply_correction(ed: GraphEditor, model: FloatModel, layer: LayerInfo, node: onnx.NodeProto,
                     correction: np.ndarray) -> np.ndarray | None:
    """Fold ``correction`` into ``node``'s bias (Conv, Gemm) or the bias ``Add`` after it
    (a MatMul; a new ``Add`` where none follows: :func:`add_to_output`).

    Returns:
        The new float bias of a Conv/Gemm (for its int32 version), else None.
    """
    scale = fold_scale(model, layer, node)
    if scale is None:
        add_to_output(ed, model, node, correction * alpha_beta(layer, node)[0], name=layer.name)
        return None
    has_bias = len(node.input) > 2 and node.input[2]
    old = model.weight(node.input[2]).astype(np.float64) if has_bias else np.zeros(1)
    bias = (old + scale * correction).astype(np.float32)
    name = ed.add_init(f"{layer.name}.bias_corrected", bias)
    if has_bias:
        node.input[2] = name
    else:
        while len(node.input) < 2:
            node.input.append("")
        node.input.append(name)
    return bias
