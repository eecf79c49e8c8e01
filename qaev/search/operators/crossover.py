"""Crossovers that respect layer structure: genes travel as whole layers.

Every operator takes two parents and makes two children; the genome's layout comes from
the problem's :attr:`~qaev.search.space.SearchSpace.genome`.
"""
from __future__ import annotations

import numpy as np
from pymoo.core.crossover import Crossover

__all__ = ["LayerUniformCrossover", "LayerTwoPointCrossover", "BitAverageCrossover", "LayerCrossover"]


def _swap(X: np.ndarray, mask: np.ndarray) -> np.ndarray:
    a, b = X[0], X[1]
    return np.stack([np.where(mask, b, a), np.where(mask, a, b)])


class LayerUniformCrossover(Crossover):
    """Each layer's whole gene block (and the global block) comes from either parent with
    probability 1/2."""

    def __init__(self, **kwargs) -> None:
        super().__init__(2, 2, **kwargs)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        genome = problem.space.genome
        mask = random_state.random((X.shape[1], genome.n_layers + 1)) < 0.5
        return _swap(X, genome.expand(mask[:, :-1], mask[:, -1]))


class LayerTwoPointCrossover(Crossover):
    """Swap a contiguous run of layers (two cut points over the layer sequence): keeps
    neighbouring layers' settings together."""

    def __init__(self, **kwargs) -> None:
        super().__init__(2, 2, **kwargs)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        genome = problem.space.genome
        cuts = np.sort(random_state.integers(0, genome.n_layers + 1, size=(X.shape[1], 2)), axis=1)
        idx = np.arange(genome.n_layers)
        return _swap(X, genome.expand((idx >= cuts[:, :1]) & (idx < cuts[:, 1:])))


class BitAverageCrossover(Crossover):
    """Layer-wise averaging of weight bit widths: each child's weight-bits gene is the
    parents' mean index, rounded down for one child and up for the other; the remaining
    genes are inherited whole-layer as in :class:`LayerUniformCrossover`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(2, 2, **kwargs)
        self._uniform = LayerUniformCrossover()

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        children = self._uniform._do(problem, X, random_state=random_state)
        w = problem.space.genome.column("w_bits")
        mean = (X[0][:, w] + X[1][:, w]) / 2.0
        children[0][:, w] = np.floor(mean)
        children[1][:, w] = np.ceil(mean)
        return children


class LayerCrossover(Crossover):
    """Picks one of the layer-aware crossovers per mating.

    Args:
        weights: selection weights of (uniform, two-point, bit-average).
    """

    def __init__(self, *, weights=(0.4, 0.3, 0.3), **kwargs) -> None:
        super().__init__(2, 2, **kwargs)
        self.parts = (LayerUniformCrossover(), LayerTwoPointCrossover(), BitAverageCrossover())
        self.weights = np.asarray(weights, float) / np.sum(weights)

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        choice = random_state.choice(len(self.parts), size=X.shape[1], p=self.weights)
        out = np.empty((2, *X.shape[1:]), dtype=X.dtype)
        for k, part in enumerate(self.parts):
            sel = choice == k
            if sel.any():
                out[:, sel] = part._do(problem, X[:, sel], random_state=random_state)
        return out
