"""Mutation that moves to neighbouring precisions, with a self-adjusting rate."""
from __future__ import annotations

import numpy as np
from pymoo.core.mutation import Mutation


__all__ = ["NeighbourMutation"]


class NeighbourMutation(Mutation):
    """Per layer, with probability ``rate``, one gene that has a choice changes: weight bits
    or activation step one index up or down (a neighbouring precision), granularity,
    rounding or bias correction moves to another option, symmetry flips. Global genes (calibration, scale rule) change with the same
    probability.

    The rate adapts each generation (a one-fifth-success style rule): when the previous
    generation improved the non-dominated set it shrinks by ``factor`` to refine, otherwise
    it grows to explore, bounded by ``[1/n_layers, 0.5]``.

    Args:
        rate: initial per-layer mutation probability (default ``2 / n_layers``).
        factor: multiplicative adaptation step.
    """  # noqa: E501 - one docstring line runs long; its text is kept as it is

    def __init__(self, *, rate: float | None = None, factor: float = 1.25, **kwargs) -> None:
        super().__init__(prob=1.0, **kwargs)
        self.rate = rate
        self.factor = factor
        self._last_front: frozenset | None = None

    def _adapt(self, n_layers: int, algorithm) -> float:
        low, high = 1.0 / max(n_layers, 1), 0.5
        if self.rate is None:
            self.rate = min(high, 2.0 / max(n_layers, 1))
        opt = getattr(algorithm, "opt", None) if algorithm is not None else None
        if opt is not None and len(opt):
            front = frozenset(tuple(np.asarray(x).astype(int)) for x in opt.get("X"))
            if self._last_front is not None:
                self.rate = self.rate / self.factor if front != self._last_front else self.rate * self.factor
            self._last_front = front
        self.rate = float(np.clip(self.rate, low, high))
        return self.rate

    def _do(self, problem, X, *args, random_state=None, algorithm=None, **kwargs):
        X = np.asarray(X).astype(int).copy()
        upper = problem.space.upper()
        genome = problem.space.genome
        rate = self._adapt(genome.n_layers, algorithm)
        for row in X:
            for i in np.flatnonzero(random_state.random(genome.n_layers) < rate):
                free = [p for p in range(genome.n_var)[genome.layer(i)] if upper[p] > 0]
                if not free:
                    continue
                gene = free[random_state.integers(len(free))]
                row[gene] = _step(row[gene], upper[gene], stepwise=genome.ordinal(gene), rng=random_state)
            for gene in range(genome.n_var)[genome.globals]:
                if random_state.random() < rate:
                    row[gene] = _step(row[gene], upper[gene], stepwise=genome.ordinal(gene), rng=random_state)
        return X


def _step(value: int, upper: int, *, stepwise: bool, rng) -> int:
    if upper == 0:
        return value
    if stepwise:
        moves = [v for v in (value - 1, value + 1) if 0 <= v <= upper]
        return int(rng.choice(moves))
    others = [v for v in range(upper + 1) if v != value]
    return int(rng.choice(others))
