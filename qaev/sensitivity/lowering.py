"""The greedy lowering path: one layer one width step at a time, least harm per cost saved.

Shared by the AMP-style greedy baseline (:mod:`qaev.baselines.greedy`) and the search's
sampling, which seeds a population from points on the path when the problem carries a
measured sensitivity (:class:`qaev.search.operators.QuantSampling`).
"""
from __future__ import annotations

import numpy as np

__all__ = ["greedy_path", "spread"]


def greedy_path(sens: np.ndarray, costs: np.ndarray) -> list[np.ndarray]:
    """The greedy lowering path over width indices.

    Args:
        sens: ``[layer, width index]`` -> drop with that layer at that width, others at
            the highest (column ``-1`` is the all-highest drop).
        costs: ``[layer, width index]`` -> the layer's cost at that width.

    Returns:
        Width-index vectors from all-highest down, each one step (one layer, one index)
        below the previous; only steps that save cost are taken.
    """
    n_layers, n_widths = sens.shape
    current = np.full(n_layers, n_widths - 1)
    path = [current.copy()]
    while True:
        best, best_key = None, None
        for i in range(n_layers):
            j = current[i]
            if j == 0:
                continue
            saved = costs[i, j] - costs[i, j - 1]
            if saved <= 1e-12:
                continue
            key = ((sens[i, j - 1] - sens[i, j]) / saved, -saved, i)
            if best_key is None or key < best_key:
                best, best_key = i, key
        if best is None:
            return path
        current[best] -= 1
        path.append(current.copy())


def spread(candidates: list, n: int) -> list:
    """``n`` of ``candidates`` evenly spread, always keeping the last one (all when ``n``
    covers them): the points of a path, or of a budget sweep, that a budget can afford."""
    if n >= len(candidates):
        return list(candidates)
    if n <= 0:
        return []
    picks = np.unique(np.round(np.linspace(len(candidates) - 1, 0, n)).astype(int))
    return [candidates[k] for k in sorted(picks)]
