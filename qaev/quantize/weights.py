"""Weight and activation grids: round-to-nearest quantization at any width and granularity.

Sub-byte values are held in 8-bit containers clamped to the k-bit grid; ONNX Runtime then
runs real int8 kernels on them, with outputs identical to native INT4/INT2 storage.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from qaev.config import Granularity, ScaleRule, WeightRange

__all__ = ["QuantizedWeight", "quantize_weight", "activation_params", "ActParams", "WeightCache", "signed_limits"]

_EPS = 1e-12


def signed_limits(bits: int, *, symmetric: bool) -> tuple[int, int]:
    """Integer grid of a signed container: restricted ``[-(2^(b-1)-1), 2^(b-1)-1]`` when
    symmetric (zero point 0), full ``[-2^(b-1), 2^(b-1)-1]`` otherwise."""
    hi = 2 ** (bits - 1) - 1
    return (-hi if symmetric else -hi - 1), hi


def _container(bits: int) -> type:
    return np.int8 if bits <= 8 else np.int16


def _pow2(scale: np.ndarray) -> np.ndarray:
    return np.exp2(np.ceil(np.log2(np.maximum(scale, _EPS)))).astype(np.float32)


@dataclass(frozen=True)
class QuantizedWeight:
    """A quantized weight in ONNX ``DequantizeLinear`` layout.

    Attributes:
        q: integer values, the weight's shape, int8 (<= 8 bits) or int16 container.
        scale: float32; shape ``()`` per-tensor, ``(C,)`` per-channel, or the weight's
            shape with the block axis divided by ``block_size`` (rounded up).
        zero_point: same shape and dtype as ``q``'s container.
        axis: the DequantizeLinear ``axis`` (None per-tensor).
        block_size: the DequantizeLinear ``block_size`` (None unless block-wise).
        bits: grid width.
    """

    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    block_size: int | None
    bits: int

    def dequantize(self) -> np.ndarray:
        """Float32 values exactly as ``DequantizeLinear`` computes them."""
        zp = _expand(self.zero_point.astype(np.int32), self.q.shape, self.axis, self.block_size)
        scale = _expand(self.scale, self.q.shape, self.axis, self.block_size)
        return ((self.q.astype(np.int32) - zp).astype(np.float32) * scale).astype(np.float32)

    @property
    def n_scales(self) -> int:
        """Number of scale values stored."""
        return int(self.scale.size)


def _expand(values: np.ndarray, shape: tuple, axis: int | None, block: int | None) -> np.ndarray:
    """Broadcast per-group values (scales, zero points) back to the weight's shape."""
    if axis is None:
        return values
    if block is None:
        view = [1] * len(shape)
        view[axis] = -1
        return values.reshape(view)
    return np.take(np.repeat(values, block, axis=axis), np.arange(shape[axis]), axis=axis)


def _grouped_range(w: np.ndarray, axis: int | None, block: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min and max per group; returns (lo, hi, w_view) with groups along ``axis``."""
    if axis is None:
        return np.array(w.min()), np.array(w.max()), w
    if block is None:
        reduce = tuple(i for i in range(w.ndim) if i != axis)
        return w.min(axis=reduce), w.max(axis=reduce), w
    n = w.shape[axis]
    n_blocks = math.ceil(n / block)
    pad = n_blocks * block - n
    moved = np.moveaxis(w, axis, -1)
    if pad:
        edge = np.repeat(moved[..., -1:], pad, axis=-1)  # repeat a real value: ranges unchanged
        moved = np.concatenate([moved, edge], axis=-1)
    blocks = moved.reshape(*moved.shape[:-1], n_blocks, block)
    lo = np.moveaxis(blocks.min(axis=-1), -1, axis)
    hi = np.moveaxis(blocks.max(axis=-1), -1, axis)
    return lo, hi, w


_SHRINKS = np.linspace(0.3, 1.0, 36)


def _group_sum(x: np.ndarray, axis: int | None, block: int | None) -> np.ndarray:
    """Sum of ``x`` per scale group (the groups of :func:`_grouped_range`)."""
    if axis is None:
        return np.array(x.sum())
    if block is None:
        return x.sum(axis=tuple(i for i in range(x.ndim) if i != axis))
    n = x.shape[axis]
    n_blocks = math.ceil(n / block)
    moved = np.moveaxis(x, axis, -1)
    pad = n_blocks * block - n
    if pad:
        moved = np.concatenate([moved, np.zeros(moved.shape[:-1] + (pad,), moved.dtype)], axis=-1)
    return np.moveaxis(moved.reshape(*moved.shape[:-1], n_blocks, block).sum(axis=-1), -1, axis)


def _mse_shrink(w, lo, hi, *, axis, block, qmin: int, qmax: int, symmetric: bool) -> np.ndarray:
    """Per group, the factor in ``_SHRINKS`` applied to the min/max range that minimises the
    squared rounding error of the group's weights (a grid search, as in the MSE option of
    GPTQ's reference quantizer; Frantar et al., ICLR 2023)."""
    best_err, best = None, None
    for shrink in _SHRINKS:
        scale, zp = _grid(lo * shrink, hi * shrink, qmin=qmin, qmax=qmax, symmetric=symmetric)
        s, z = _expand(scale, w.shape, axis, block), _expand(zp, w.shape, axis, block)
        err = _group_sum(np.square((np.clip(np.round(w / s) + z, qmin, qmax) - z) * s - w), axis, block)
        if best_err is None:
            best_err, best = err, np.full(np.shape(err), shrink)
        else:
            better = err < best_err
            best_err, best = np.where(better, err, best_err), np.where(better, shrink, best)
    return best


def _grid(lo, hi, *, qmin: int, qmax: int, symmetric: bool,
          scale_rule: ScaleRule = ScaleRule.FLOAT) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point covering ``[lo, hi]`` (zero included when asymmetric)."""
    if symmetric:
        scale = np.maximum(np.abs(lo), np.abs(hi)) / qmax
    else:
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        scale = (hi - lo) / (qmax - qmin)
    scale = np.maximum(scale, _EPS).astype(np.float32)
    if scale_rule is ScaleRule.POW2:
        scale = _pow2(scale)
    zp = np.zeros_like(scale, dtype=np.int32) if symmetric else np.clip(np.round(qmin - lo / scale), qmin, qmax)
    return scale, zp.astype(np.int32)


def quantize_weight(
    w: np.ndarray,
    *,
    bits: int,
    granularity: Granularity,
    symmetric: bool,
    scale_rule: ScaleRule,
    channel_axis: int,
    reduce_axis: int | None,
    weight_range: WeightRange = WeightRange.MINMAX,
) -> QuantizedWeight:
    """Round-to-nearest quantization of a weight.

    Args:
        w: float weight.
        bits: 2..16.
        granularity: per-tensor, per-channel (``channel_axis``) or block-wise along
            ``reduce_axis``.
        symmetric: zero point 0 and a restricted signed grid, or an asymmetric grid.
        scale_rule: float scales, or scales rounded up to a power of two.
        channel_axis: output-channel axis of ``w``.
        reduce_axis: reduction axis of ``w`` (required for block-wise).
        weight_range: each group's min/max range, or that range shrunk by the factor
            that minimises the group's squared rounding error (``mse``).

    Returns:
        The :class:`QuantizedWeight`.
    """
    w = np.asarray(w, dtype=np.float32)
    if bits == 16:  # 16-bit weights: per-channel symmetric regardless of the other genes
        granularity, symmetric = Granularity.PER_CHANNEL, True
    block = granularity.block_size
    if block is not None and reduce_axis is None:
        raise ValueError("block-wise scales need a reduction axis")
    axis = None if granularity is Granularity.PER_TENSOR else (reduce_axis if block else channel_axis)
    lo, hi, _ = _grouped_range(w, axis, block)
    qmin, qmax = signed_limits(bits, symmetric=symmetric)
    if WeightRange(weight_range) is WeightRange.MSE:
        shrink = _mse_shrink(w, lo, hi, axis=axis, block=block, qmin=qmin, qmax=qmax, symmetric=symmetric)
        lo, hi = lo * shrink, hi * shrink
    scale, zp = _grid(lo, hi, qmin=qmin, qmax=qmax, symmetric=symmetric, scale_rule=scale_rule)
    dtype = _container(bits)
    q = np.round(w / _expand(scale, w.shape, axis, block)) + _expand(zp, w.shape, axis, block)
    q = np.clip(q, qmin, qmax).astype(dtype)
    return QuantizedWeight(q, scale.astype(np.float32), zp.astype(dtype), axis, block, bits)


@dataclass(frozen=True)
class ActParams:
    """Static activation quantization: unsigned container, grid ``[0, 2^bits - 1]``."""

    scale: float
    zero_point: int
    bits: int

    @property
    def dtype(self) -> type:
        """The unsigned container (uint8 up to 8 bits, else uint16)."""
        return np.uint8 if self.bits <= 8 else np.uint16

    @property
    def clip(self) -> tuple[float, float]:
        """The float interval the k-bit grid covers (a container wider than the grid saturates
        later, so sub-byte activations are clipped to this first)."""
        qmax = 2**self.bits - 1
        return (0 - self.zero_point) * self.scale, (qmax - self.zero_point) * self.scale


def activation_params(lo: float, hi: float, *, bits: int, scale_rule: ScaleRule) -> ActParams:
    """Asymmetric activation scale and zero point for the range ``[lo, hi]`` (zero included)."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    qmax = 2**bits - 1
    scale = max((hi - lo) / qmax, _EPS)
    if scale_rule is ScaleRule.POW2:
        scale = float(_pow2(np.array(scale)))
    zero_point = int(np.clip(round(-lo / scale), 0, qmax))
    return ActParams(scale=float(np.float32(scale)), zero_point=zero_point, bits=bits)


class WeightCache:
    """Memo of quantized weights per (weight, bits, granularity, symmetric, scale rule)."""

    def __init__(self) -> None:
        self._store: dict[tuple, QuantizedWeight] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, compute) -> QuantizedWeight:
        """The cached value for ``key``, computing it with ``compute()`` on a miss."""
        found = self._store.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        value = compute()
        self._store[key] = value
        return value

    def __len__(self) -> int:
        return len(self._store)
