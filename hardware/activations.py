"""Estimated activation sizes of a layer, from its MACs and weight shape."""
from __future__ import annotations

import math

from qaev.model.layers import LayerInfo

__all__ = ["activation_elements"]


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _reduction(layer: LayerInfo) -> int:
    """Elements summed per output channel (the reduction axis, or all non-channel axes)."""
    if layer.reduce_axis is not None:
        return int(layer.weight_shape[layer.reduce_axis])
    return layer.params // max(int(layer.weight_shape[layer.channel_axis]), 1)


def activation_elements(layer: LayerInfo) -> tuple[int, int]:
    """Estimated (input, output) activation elements per sample.

    Derived from MACs and the weight shape, as LayerInfo carries no activation shapes:
    Conv/ConvTranspose assume stride 1 and group 1 (depthwise: one group per channel), so
    strided or grouped convs are underestimated; Gemm/MatMul are exact; a MatMul of two
    activations assumes ``M = K = N`` (two inputs and one output of ``MACs^(2/3)``);
    a Gather outputs one table row per sample (the sequence length is unknown).
    Unknown MACs give (0, 0).
    """
    macs, w, op = layer.macs, layer.weight_shape, layer.op_type
    if op == "Gather":
        return 0, int(w[1]) if len(w) > 1 else 0
    if not macs:
        return 0, 0
    if op == "MatMulAct":
        side = round(macs ** (1.0 / 3.0))
        return 2 * side * side, side * side
    if op in ("Gemm", "MatMul"):
        k = int(w[layer.reduce_axis]) if layer.reduce_axis is not None else _reduction(layer)
        n = int(w[layer.channel_axis])
        return macs // max(n, 1), macs // max(k, 1)
    kernel = _prod(w[2:])
    if op == "ConvTranspose":  # weight (C_in, C_out/group, k...); MACs counted per input element
        n_in = macs // max(int(w[1]) * kernel, 1)
        return n_in, n_in * int(w[1]) // max(int(w[0]), 1)
    n_out = macs // max(_prod(w[1:]), 1)  # Conv: weight (C_out, C_in/group, k...)
    n_in = macs // max(kernel, 1) if layer.depthwise else macs // max(int(w[0]) * kernel, 1)
    return n_in, n_out
