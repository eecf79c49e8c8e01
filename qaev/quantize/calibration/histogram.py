"""Histogram helpers shared by the calibration methods."""
from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["GRID", "quantile", "span", "searched_range"]

GRID = 1 << 22  # candidate cells per vectorised range search (bounds memory at large bins)


def quantile(counts: np.ndarray, start: float, width: float, q: float) -> float:
    """Inverse CDF of a histogram, linear within the bin (q = 0 gives its start)."""
    cdf = np.cumsum(counts)
    target = q * cdf[-1]
    if target <= 0:
        return start
    i = min(int(np.searchsorted(cdf, target, side="left")), counts.size - 1)
    return start + (i + (target - (cdf[i - 1] if i else 0)) / counts[i]) * width


def span(counts: np.ndarray, start: float, width: float) -> tuple[int, int, int]:
    """Edge indices: first occupied, zero, one past the last occupied (zero included)."""
    nz = np.flatnonzero(counts)
    zero = int(round(-start / width))
    return min(int(nz[0]), zero), zero, max(int(nz[-1]) + 1, zero)


def searched_range(h, bits: int, symmetric: bool, search: Callable) -> tuple[float, float]:
    """The range a window search (``search(counts, start, width, lo, hi, levels, steps)``)
    finds: one threshold ``t`` on ``|x|`` when symmetric or the data has one sign (with
    ``2**(bits-1)`` levels symmetric, else ``2**bits``), else a window ``(lo, hi)`` around
    zero with ``2**bits`` levels."""
    lo, hi, w = float(h.lo), float(h.hi), 2.0 * h.radius / h.counts.size
    amax = max(-lo, hi)
    if symmetric or lo >= 0.0 or hi <= 0.0:
        levels, steps = (2 ** (bits - 1), (2**bits - 1) / 2) if symmetric else (2**bits, 2**bits - 1)
        t = search(h.folded(), 0.0, w, 0.0, amax, levels, steps)[1]
        return (-t, t) if symmetric else ((0.0, t) if lo >= 0.0 else (-t, 0.0))
    return search(h.counts, -h.radius, w, lo, hi, 2**bits, 2**bits - 1)
