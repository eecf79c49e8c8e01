"""Exact weight bytes of a layer.

Weight bytes are exact bit counts: ``ceil(params * bits / 8)`` for the values, one fp32
scale (4 bytes) per scale group and one zero point (1 byte) per group when the grid is
asymmetric. Groups: per-tensor 1, per-channel one per output channel, block-wise one per
``block_size`` run along the reduction axis. Float weights take 4 bytes per parameter.
A codebook table (2 bits per weight) adds one fp32 scale per row and its 256 four-weight
fp32 vectors; a packed lookup table (at most 4 bits, :mod:`qaev.quantize.lookup`) its
256-row int8 decoding table.
"""
from __future__ import annotations

import math

import onnx
from onnx import numpy_helper
from typing import Sequence

from qaev.config import Granularity, LayerConfig, QuantConfig
from qaev.quantize.lookup import DECODE_ROWS, gathers_first, packed_bits
from qaev.quantize.rounding.registry import get_rounding, rounding_entry
from qaev.model.layers import LayerInfo

__all__ = ["SCALE_BYTES", "ZERO_POINT_BYTES", "FLOAT_WEIGHT_BYTES", "scale_groups", "weight_bytes", "estimate_cost",
           "model_bytes", "other_bytes"]

SCALE_BYTES = 4  # fp32 scale
ZERO_POINT_BYTES = 1  # int8/uint8 zero point, asymmetric grids only
FLOAT_WEIGHT_BYTES = 4  # fp32 weight as stored in the ONNX file


def _prod(values) -> int:
    return math.prod(int(v) for v in values)


def _reduction(layer: LayerInfo) -> int:
    """Elements summed per output channel (the reduction axis, or all non-channel axes)."""
    if layer.reduce_axis is not None:
        return int(layer.weight_shape[layer.reduce_axis])
    return layer.params // max(int(layer.weight_shape[layer.channel_axis]), 1)


def scale_groups(layer: LayerInfo, granularity: Granularity) -> int:
    """Number of scales a weight gets at ``granularity``."""
    if not layer.has_weight or not layer.params:
        return 0
    if granularity is Granularity.PER_TENSOR:
        return 1
    if granularity.block_size is None:
        return int(layer.weight_shape[layer.channel_axis])
    k = max(_reduction(layer), 1)
    return (layer.params // k) * math.ceil(k / granularity.block_size)


def weight_bytes(layer: LayerInfo, cfg: LayerConfig | None, *, bits: int | None = None) -> int:
    """Exact stored bytes of a layer's weight under ``cfg`` (None: float).

    Args:
        layer: the layer.
        cfg: its config; None or a float weight gives 4 bytes per parameter.
        bits: count the values at this width instead of ``cfg.w_bits`` (scales unchanged).
    """
    if not layer.has_weight:
        return 0
    if cfg is None or cfg.w_bits is None:
        return layer.params * FLOAT_WEIGHT_BYTES
    eff = cfg.effective()
    width = eff.w_bits if bits is None else bits
    if not rounding_entry(eff.rounding).on_grid:
        return get_rounding(eff.rounding).weight_bytes(layer, eff)
    groups = scale_groups(layer, eff.granularity)
    zero_points = 0 if eff.symmetric else groups * ZERO_POINT_BYTES
    packed = packed_bits(width) if gathers_first(layer, eff.granularity.block_size) else None
    decoding = DECODE_ROWS * (8 // packed) if packed else 0  # int8 values
    return math.ceil(layer.params * width / 8) + groups * SCALE_BYTES + zero_points + decoding


def estimate_cost(layers: Sequence[LayerInfo], config: QuantConfig, table, *, batch: int = 1,
                  memo: dict | None = None):
    """:func:`qaev.hardware.estimate` of ``config`` with this engine's exact weight sizes
    (every figure in the report but the sizes is an estimate); ``memo``: see there."""
    from qaev.hardware.cost import estimate

    return estimate(layers, config, table, batch=batch, weight_bytes=weight_bytes, memo=memo)


def other_bytes(proto: onnx.ModelProto, layers: Sequence[LayerInfo]) -> int:
    """Bytes of the initializers of ``proto`` that are no layer's weight (biases, norms)."""
    weights = {layer.weight for layer in layers if layer.weight}
    return sum(numpy_helper.to_array(init).nbytes for init in proto.graph.initializer if init.name not in weights)


def model_bytes(layers: Sequence[LayerInfo], config: QuantConfig, other: int) -> int:
    """Exact weight storage: every layer's weight at its bits (with scales and zero points)
    plus ``other`` bytes (every other initializer, as :func:`other_bytes` counts them)."""
    return other + sum(weight_bytes(layer, config.layer(layer.name)) for layer in layers)
