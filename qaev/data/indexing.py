"""Index checks, ``head`` and seeded ``split`` shared by every dataset kind."""
from __future__ import annotations

import numpy as np

from qaev.errors import DataError

__all__ = ["Indexed", "readonly"]


def readonly(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array`` (the caller's array stays writable)."""
    view = array.view()
    view.flags.writeable = False
    return view


class Indexed:
    """Mixin for datasets that define ``__len__``, ``name`` and ``subset(indices)``;
    ``_unit`` names what one index counts (samples, pairs)."""

    _unit = "samples"

    def _positions(self, indices) -> np.ndarray:
        """``indices`` as non-negative integer positions.

        Raises:
            DataError: Non-integer, out-of-range or no indices.
        """
        idx = np.asarray(indices)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise DataError(f"{self.name}: subset needs a 1-D array of integer positions")
        if idx.size == 0:
            raise DataError(f"{self.name}: subset of no {self._unit}")
        n = len(self)
        if idx.min() < -n or idx.max() >= n:
            raise DataError(f"{self.name}: subset index out of range for {n} {self._unit}")
        return np.where(idx < 0, idx + n, idx)

    def head(self, n: int):
        """The first ``min(n, len(self))`` items; ``n`` must be >= 1."""
        if n < 1:
            raise DataError(f"{self.name}: head needs n >= 1, got {n}")
        return self.subset(np.arange(min(n, len(self))))

    def split(self, *, n_first: int, n_second: int | None, seed: int):
        """Two disjoint random parts drawn with a seeded permutation, each in the original order.

        Args:
            n_first: items in the first part, at least 1.
            n_second: items in the second part, at least 1, or None for all the rest.
            seed: seed of the permutation (``numpy.random.default_rng``).

        Raises:
            DataError: fewer than ``n_first + n_second`` items, or an empty part.
        """
        n = len(self)
        second = n - n_first if n_second is None else n_second
        if n_first < 1 or second < 1 or n_first + second > n:
            raise DataError(f"{self.name}: cannot split {n} {self._unit} into {n_first} + "
                            f"{'the rest' if n_second is None else n_second}")
        order = np.random.default_rng(seed).permutation(n)
        return self.subset(np.sort(order[:n_first])), self.subset(np.sort(order[n_first:n_first + second]))
