"""Staged evaluation: measure on a subset first, finish only candidates that can still
reach the front (racing in the spirit of Maron & Moore, "Hoeffding Races", NIPS 1993;
here with a paired-bootstrap margin instead of a Hoeffding bound)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Staging", "dominated"]


@dataclass(frozen=True, kw_only=True)
class Staging:
    """Settings of the first stage.

    Args:
        fraction: share of the evaluation set measured first.
        min_samples: at least this many samples in the first stage.
        z: margin in standard errors: a candidate is dropped only when even its
            metric drop minus ``z`` standard errors is dominated by a fully measured point.
        n_boot: bootstrap resamples for the standard error.
    """

    fraction: float = 0.25
    min_samples: int = 64
    z: float = 2.0
    n_boot: int = 50

    def size(self, n: int) -> int:
        """First-stage sample count for an evaluation set of ``n``."""
        return int(min(n, max(self.min_samples, round(self.fraction * n))))


def dominated(candidate: np.ndarray, front: np.ndarray) -> bool:
    """Whether any row of ``front`` is at least as good everywhere and better somewhere."""
    if front.size == 0:
        return False
    better_eq = np.all(front <= candidate, axis=1)
    strictly = np.any(front < candidate, axis=1)
    return bool(np.any(better_eq & strictly))
