"""What a calibration method implements: a range from one tensor's histogram."""
from __future__ import annotations

__all__ = ["CalibrationMethod"]


class CalibrationMethod:
    """Base of every method; ``name`` is its registry key.

    :meth:`range` reads a histogram object with ``counts`` (``bins`` equal bins over
    ``[-radius, radius]``), ``radius``, the exact ``lo`` and ``hi`` of the values, and
    ``folded()`` (the histogram of ``|x|``, ``bins // 2`` bins over ``[0, radius]``).
    The statistics clamp the result to include zero.
    """

    name: str = ""

    def range(self, hist, *, bits: int | None, symmetric: bool, percentile: float | None) -> tuple[float, float]:
        """``(lo, hi)`` of the tensor (``(-t, t)`` when ``symmetric``)."""
        raise NotImplementedError
