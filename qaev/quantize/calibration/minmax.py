"""Min/max calibration: the exact range of the values."""
from __future__ import annotations

from qaev.quantize.calibration.base import CalibrationMethod

__all__ = ["MinMax", "METHOD"]


class MinMax(CalibrationMethod):
    """Exact min and max (symmetric: the largest magnitude)."""

    name = "minmax"

    def range(self, hist, *, bits, symmetric, percentile):
        lo, hi = float(hist.lo), float(hist.hi)
        amax = max(-lo, hi)
        return (-amax, amax) if symmetric else (lo, hi)


METHOD = MinMax()
