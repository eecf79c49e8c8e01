"""Any grid method's weight: the round-to-nearest grid, then the config's method on it."""
from __future__ import annotations

from typing import Callable

import numpy as np

from qaev.config import LayerConfig, ScaleRule
from qaev.model.layers import LayerInfo
from qaev.quantize.rounding.registry import get_rounding
from qaev.quantize.weights import QuantizedWeight, quantize_weight

__all__ = ["round_weight"]


def round_weight(w: np.ndarray, layer: LayerInfo, eff: LayerConfig, *, scale_rule: ScaleRule,
                 stats: Callable) -> QuantizedWeight:
    """``w`` on the grid an effective layer config describes (bits, granularity, symmetry,
    range rule), with the grid point of each weight chosen by the config's rounding method
    (``stats()`` gives the layer's input statistics to the methods that need data)."""
    grid = quantize_weight(w, bits=eff.w_bits, granularity=eff.granularity, symmetric=eff.symmetric,
                           scale_rule=scale_rule, channel_axis=layer.channel_axis, reduce_axis=layer.reduce_axis,
                           weight_range=eff.weight_range)
    return get_rounding(eff.rounding).round(w, layer, eff, grid=grid, stats=stats)
