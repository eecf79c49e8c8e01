"""Entropy calibration: the window of least KL divergence between the clipped histogram and
its quantized version (Migacz, "8-bit Inference with TensorRT", GTC 2017)."""
from __future__ import annotations

import numpy as np

from qaev.quantize.calibration.base import CalibrationMethod
from qaev.quantize.calibration.histogram import GRID, searched_range, span

__all__ = ["Entropy", "METHOD"]


class Entropy(CalibrationMethod):
    """Windows end on bin edges and span at least one bin per level; for data of both signs
    ``lo`` and ``hi`` are found by two alternating 1-D passes. When the occupied bins are no
    more than the levels nothing can be resolved and the result is min/max."""

    name = "entropy"

    def range(self, hist, *, bits, symmetric, percentile):
        return searched_range(hist, bits, symmetric, _entropy)


def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def _kl(h: np.ndarray, a: np.ndarray, b: np.ndarray, levels: int) -> np.ndarray:
    """KL(P || Q) for each window ``[a[k], b[k])`` of bins, vectorised over windows.

    P is the window with the mass left of it added to its first bin and the mass right of
    it added to its last; Q splits the window into ``levels`` groups of (almost) equal bin
    count and spreads each group's unclipped mass evenly over the group's bins where P is
    non-zero. Needs ``b - a >= levels``. Computed from prefix sums in O(levels) per window.
    """
    c, nzc, cl = (np.concatenate([[0.0], np.cumsum(v)]) for v in (h, h > 0, _xlogx(h)))
    total = c[-1]
    e = a[:, None] + (np.arange(levels + 1)[None, :] * (b - a)[:, None]) // levels
    grp = c[e[:, 1:]] - c[e[:, :-1]]
    cnt = nzc[e[:, 1:]] - nzc[e[:, :-1]]
    left, right = c[a], total - c[b]
    ha, hb, inside = h[a], h[b - 1], c[b] - c[a]
    cnt[:, 0] += (ha == 0) & (left > 0)  # an empty edge bin that receives clipped mass
    cnt[:, -1] += (hb == 0) & (right > 0)
    pg = grp.copy()  # P summed per group
    pg[:, 0] += left
    pg[:, -1] += right
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(grp > 0, grp / np.maximum(cnt, 1), 1e-12 * inside[:, None])
        cross = np.where(pg > 0, pg * np.log(np.where(pg > 0, q, 1.0)), 0.0).sum(axis=1)
        plogp = cl[b] - cl[a] - _xlogx(ha) + _xlogx(ha + left) - _xlogx(hb) + _xlogx(hb + right)
        kl = (plogp - cross) / total + np.log(inside / total)
    return np.where(inside > 0, kl, np.inf)


def _entropy(counts, start, width, lo, hi, levels, steps) -> tuple[float, float]:
    """KL search over windows containing zero: two alternating passes over hi, then lo."""
    a0, zero, b0 = span(counts, start, width)
    if b0 - a0 <= levels:  # every bin gets its own level: nothing to resolve
        return lo, hi
    h, a, b = counts.astype(np.float64), a0, b0

    def best(lo_edges, hi_edges):  # chunks keep the (windows, levels) arrays near 32 MB
        n = max(1, GRID // levels)
        kl = [_kl(h, lo_edges[i:i + n], hi_edges[i:i + n], levels) for i in range(0, lo_edges.size, n)]
        return int(np.argmin(np.concatenate(kl)))

    for _ in range(2):
        cand = np.arange(max(a + levels, zero), b0 + 1)
        b = int(cand[best(np.full_like(cand, a), cand)])
        cand = np.arange(a0, min(b - levels, zero) + 1)
        a = int(cand[best(cand, np.full_like(cand, b))])
    return max(start + a * width, lo), min(start + b * width, hi)


METHOD = Entropy()
