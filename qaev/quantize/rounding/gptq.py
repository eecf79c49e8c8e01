"""Second-order (GPTQ/OBQ-style) weight rounding on the round-to-nearest grid.

The grid (scales and zero points) is exactly the one :func:`~qaev.quantize.weights.quantize_weight`
picks, so granularity, symmetry and the scale rule mean what they always mean; only the
choice of grid point per weight changes. Columns along the reduction dimension are
quantized one at a time and the error of each is spread over the columns not yet
quantized with the inverse of the layer-input Hessian ``H = 2 X^T X`` (Frantar &
Alistarh, "Optimal Brain Compression", NeurIPS 2022; Frantar et al., "GPTQ", ICLR 2023),
in lazily-updated blocks of columns and in order of decreasing ``diag(H)``
("act-order"; free here because the grid is fixed before rounding starts).

Weights are rounded in the grouped view of :mod:`qaev.quantize.rounding.groups`.
"""
from __future__ import annotations


import numpy as np

from qaev.model.layers import LayerInfo
from qaev.quantize.rounding.base import DataAwareRounding
from qaev.quantize.rounding.groups import from_groups, reconstruction_error, to_groups
from qaev.quantize.weights import QuantizedWeight, _expand, signed_limits

__all__ = ["GPTQ", "METHOD", "gptq_round"]


def _upper_inverse_cholesky(h: np.ndarray, damp: float) -> np.ndarray:
    """Upper Cholesky factor ``U`` of ``(H + damp*mean(diag H) I)^-1`` per group
    (``H^-1 = U^T U``), raising the dampening tenfold until it is positive definite."""
    n = h.shape[-1]
    mean_diag = np.maximum(np.einsum("gii->g", h) / n, 1e-12)
    eye = np.eye(n)
    for _ in range(8):
        try:
            damped = h + (damp * mean_diag)[:, None, None] * eye
            inv = np.linalg.inv(np.linalg.cholesky(damped))  # L^-1, so H^-1 = L^-T L^-1
            hinv = np.swapaxes(inv, -1, -2) @ inv
            return np.swapaxes(np.linalg.cholesky(hinv), -1, -2)
        except np.linalg.LinAlgError:
            damp = max(damp * 10.0, 1e-6)
    raise np.linalg.LinAlgError("layer-input Hessian is not positive definite even with heavy dampening")


def _round_columns(w: np.ndarray, scale: np.ndarray, zp: np.ndarray, u: np.ndarray, qmin: int, qmax: int,
                   block: int) -> np.ndarray:
    """The GPTQ sweep over columns of ``w`` (G, R, n), float64, modified in place."""
    n = w.shape[-1]
    q = np.empty_like(w)
    for start in range(0, n, block):
        end = min(start + block, n)
        err = np.empty(w.shape[:-1] + (end - start,))
        for j in range(start, end):
            col = w[:, :, j]
            qj = np.clip(np.round(col / scale[:, :, j]) + zp[:, :, j], qmin, qmax)
            q[:, :, j] = qj
            e = (col - (qj - zp[:, :, j]) * scale[:, :, j]) / u[:, None, j, j]
            err[:, :, j - start] = e
            if j + 1 < end:
                w[:, :, j + 1:end] -= e[:, :, None] * u[:, None, j, j + 1:end]
        if end < n:
            w[:, :, end:] -= err @ u[:, start:end, end:]
    return q


def gptq_round(w: np.ndarray, nearest: QuantizedWeight, hessian: np.ndarray, *, layer: LayerInfo,
               symmetric: bool, damp: float = 0.01, block: int = 128, act_order: bool = True) -> QuantizedWeight:
    """Second-order rounding of ``w`` onto the grid of ``nearest``.

    Rows (output channels) whose second-order rounding would reconstruct the calibration
    outputs worse than round-to-nearest keep the nearest values, so the layer's error
    ``||X W - X W_q||^2`` on the calibration rows never exceeds round-to-nearest's.

    Args:
        w: the float weight in its ONNX layout.
        nearest: round-to-nearest result for ``w`` (its scales and zero points are reused).
        hessian: ``(G, n, n)`` layer-input second moment ``E[x x^T]`` per group
            (:class:`qaev.quantize.layer_inputs.InputStats`).
        layer: the layer ``w`` belongs to (weight layout).
        symmetric: whether the grid is symmetric (its integer range).
        damp: dampening, a fraction of the mean Hessian diagonal added to the diagonal.
        block: columns per lazy update.
        act_order: quantize inputs in order of decreasing Hessian diagonal.

    Returns:
        A :class:`QuantizedWeight` with the same scales, zero points and layout as ``nearest``.
    """
    groups = hessian.shape[0]
    shape = w.shape
    full = lambda v: np.broadcast_to(_expand(v, shape, nearest.axis, nearest.block_size), shape)  # noqa: E731
    wm = to_groups(np.asarray(w, np.float64), layer, groups)
    sm = to_groups(full(nearest.scale).astype(np.float64), layer, groups)
    zm = to_groups(full(nearest.zero_point).astype(np.float64), layer, groups)
    h0 = np.asarray(hessian, np.float64)
    h = h0.copy()
    diag = np.einsum("gii->gi", h)  # a writable view of the diagonals
    dead = diag <= 0
    diag[dead] = 1.0  # inputs that are always zero: no error to compensate
    n = h.shape[-1]
    if act_order:
        perm = np.argsort(-np.where(dead, -np.inf, np.einsum("gii->gi", h0)), axis=1, kind="stable")
    else:
        perm = np.broadcast_to(np.arange(n), (groups, n))
    take = lambda a: np.take_along_axis(a, perm[:, None, :], axis=2)  # noqa: E731
    hp = np.take_along_axis(np.take_along_axis(h, perm[:, :, None], axis=1), perm[:, None, :], axis=2)
    u = _upper_inverse_cholesky(hp, damp)
    qmin, qmax = signed_limits(nearest.bits, symmetric=symmetric)
    qp = _round_columns(take(wm).copy(), take(sm), take(zm), u, qmin, qmax, block)
    qm = np.empty_like(qp)
    np.put_along_axis(qm, perm[:, None, :], qp, axis=2)
    q_near = to_groups(nearest.q.astype(np.float64), layer, groups)
    err_gptq = reconstruction_error(wm - (qm - zm) * sm, h0)
    err_near = reconstruction_error(wm - (q_near - zm) * sm, h0)
    qm = np.where((err_gptq <= err_near)[:, :, None], qm, q_near)
    q = from_groups(qm, layer, shape).astype(nearest.q.dtype)
    return QuantizedWeight(q, nearest.scale, nearest.zero_point, nearest.axis, nearest.block_size, nearest.bits)


class GPTQ(DataAwareRounding):
    """:func:`gptq_round` with the layer-input Hessian of the calibration data."""

    name = "gptq"

    def round(self, w, layer, eff, *, grid, stats):
        return gptq_round(w, grid, stats().hessian, layer=layer, symmetric=eff.symmetric)


METHOD = GPTQ()
