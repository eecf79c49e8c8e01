"""The grouped view of a weight shared by data-aware rounding and bias correction.

A weight is viewed as ``(G, R, n)``: ``G`` independent groups (convolution groups; one for
Gemm/MatMul), ``R`` output channels per group, ``n`` inputs per output (``Cin/G * k`` for a
Conv, matching :func:`qaev.quantize.layer_inputs.im2col`). Depthwise convolutions are thus
per-channel problems with ``k*k`` inputs each.
"""
from __future__ import annotations

import numpy as np

from qaev.model.layers import LayerInfo

__all__ = ["supports_data_aware", "to_groups", "from_groups", "reconstruction_error"]


def supports_data_aware(layer: LayerInfo) -> bool:
    """Whether data-aware rounding and bias correction apply to ``layer``: Conv, Gemm and
    MatMul with a 2-D weight (ConvTranspose, lookups and activation MatMuls do not)."""
    if not layer.has_weight or layer.op_type not in ("Conv", "Gemm", "MatMul"):
        return False
    return layer.op_type == "Conv" or len(layer.weight_shape) == 2


def to_groups(w: np.ndarray, layer: LayerInfo, groups: int) -> np.ndarray:
    """View weight ``w`` of ``layer`` as ``(G, R, n)`` (output channels x inputs per group)."""
    if layer.op_type == "Conv":
        return w.reshape(groups, w.shape[0] // groups, -1)
    return (w if layer.reduce_axis == 1 else w.T)[None]


def from_groups(m: np.ndarray, layer: LayerInfo, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`to_groups`."""
    if layer.op_type == "Conv":
        return m.reshape(shape)
    return np.ascontiguousarray(m[0] if layer.reduce_axis == 1 else m[0].T)


def reconstruction_error(delta: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """Per output channel ``d H d^T`` for grouped weight differences ``delta`` ``(G, R, n)``:
    proportional to ``||X w - X w_q||^2`` over the calibration rows when ``H = X^T X``."""
    return np.einsum("grn,gnm,grm->gr", delta, hessian, delta, optimize=True)
