"""MSE calibration: the clip of least estimated squared error."""
from __future__ import annotations

import numpy as np

from qaev.quantize.calibration.base import CalibrationMethod
from qaev.quantize.calibration.histogram import GRID, searched_range, span

__all__ = ["MSE", "METHOD"]


class MSE(CalibrationMethod):
    """Squared error from bin centres: ``step**2 / 12`` per value inside plus the squared
    distance of clipped values, ``step = (hi - lo) / (2**bits - 1)``; every bin edge between
    zero and min/max (2-D over ``lo`` and ``hi`` when asymmetric) is a candidate."""

    name = "mse"

    def range(self, hist, *, bits, symmetric, percentile):
        return searched_range(hist, bits, symmetric, _mse)


def _mse(counts, start, width, lo, hi, levels, steps) -> tuple[float, float]:
    """Full search over (lo, hi) bin edges around zero; ``step = (hi - lo) / steps``."""
    a0, zero, b0 = span(counts, start, width)
    centre = start + (np.arange(counts.size) + 0.5) * width
    pre = [np.concatenate([[0.0], np.cumsum(counts * centre**p)]) for p in (0, 1, 2)]
    stride = max(1, int(np.ceil(np.sqrt((zero - a0 + 1) * (b0 - zero + 1) / GRID))))  # bound memory
    a = np.unique(np.r_[a0, np.arange(zero, a0 - 1, -stride)])[:, None]
    b = np.unique(np.r_[np.arange(zero, b0 + 1, stride), b0])[None, :]
    lo_c = np.maximum(start + a * width, lo)
    hi_c = np.minimum(start + b * width, hi)
    below = pre[2][a] - 2.0 * lo_c * pre[1][a] + lo_c**2 * pre[0][a]
    post = [p[-1] - p[b] for p in pre]
    above = post[2] - 2.0 * hi_c * post[1] + hi_c**2 * post[0]
    err = (pre[0][b] - pre[0][a]) * ((hi_c - lo_c) / steps) ** 2 / 12.0 + below + above
    i, j = np.unravel_index(int(np.argmin(err)), err.shape)
    return float(lo_c[i, 0]), float(hi_c[0, j])


METHOD = MSE()
