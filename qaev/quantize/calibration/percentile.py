"""Percentile calibration: each tail clipped at a share of the values."""
from __future__ import annotations

import numpy as np

from qaev.quantize.calibration.base import CalibrationMethod
from qaev.quantize.calibration.histogram import quantile

__all__ = ["Percentile", "METHOD"]


class Percentile(CalibrationMethod):
    """The ``(100 - p) / 2`` % and ``(100 + p) / 2`` % quantiles (symmetric: the ``p`` %
    quantile of ``|x|``), linear within a bin, never past min/max; ``p = 100`` is min/max."""

    name = "percentile"

    def range(self, hist, *, bits, symmetric, percentile):
        lo, hi, w = float(hist.lo), float(hist.hi), 2.0 * hist.radius / hist.counts.size
        if symmetric:
            t = min(quantile(hist.folded(), 0.0, w, percentile / 100.0), max(-lo, hi))
            return -t, t
        tail = (100.0 - percentile) / 200.0
        return tuple(float(np.clip(quantile(hist.counts, -hist.radius, w, p), lo, hi)) for p in (tail, 1.0 - tail))


METHOD = Percentile()
