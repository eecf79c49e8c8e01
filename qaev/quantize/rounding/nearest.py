"""Round-to-nearest: every weight to its nearest grid point."""
from __future__ import annotations

from qaev.quantize.rounding.base import GridRounding

__all__ = ["Nearest", "METHOD"]


class Nearest(GridRounding):
    """The grid of :func:`~qaev.quantize.weights.quantize_weight`, as it is."""

    name = "nearest"

    def round(self, w, layer, eff, *, grid, stats):
        return grid


METHOD = Nearest()
