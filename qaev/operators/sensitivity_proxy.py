"""A data-free per-layer sensitivity proxy: relative weight error at each allowed width."""
from __future__ import annotations

import numpy as np

from qaev.config import Granularity, ScaleRule

__all__ = ["weight_error_table"]


def weight_error_table(problem) -> np.ndarray:
    """``[searchable layer, w_bits index]`` -> ``||W - Q(W)|| / ||W||`` with round-to-nearest
    at the space's first granularity. Float weights and weightless layers score 0."""
    from qaev.quantize.weights import quantize_weight

    space, model = problem.space, problem.quantizer.model
    table = np.zeros((len(space.searchable), len(space.w_bits)))
    for i, layer in enumerate(space.searchable):
        if not layer.has_weight:
            continue
        granularity = space.granularities[0]
        if granularity.block_size and not layer.supports_blocks:
            granularity = Granularity.PER_CHANNEL
        w = model.weight(layer.weight)
        norm = float(np.linalg.norm(w)) or 1.0
        for j, bits in enumerate(space.w_bits):
            if bits is not None:
                q = quantize_weight(w, bits=bits, granularity=granularity, symmetric=True, scale_rule=ScaleRule.FLOAT,
                                    channel_axis=layer.channel_axis, reduce_axis=layer.reduce_axis)
                table[i, j] = float(np.linalg.norm(w - q.dequantize())) / norm
    return table
