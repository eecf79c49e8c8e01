"""Repair: every candidate made legal for the target before it is evaluated."""
from __future__ import annotations

import numpy as np
from pymoo.core.repair import Repair


__all__ = ["HardwareRepair"]


class HardwareRepair(Repair):
    """Rounds genes into range and, when the problem has a hardware table, moves every
    layer's (weight bits, activation) pair to the nearest one the target can represent
    (:func:`qaev.hardware.repair`), then re-encodes it."""

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict = {}

    def _do(self, problem, X, **kwargs):
        space = problem.space
        X = space.clip(X)
        table = getattr(problem, "table", None)
        if table is None:
            return X
        for row in X:
            for i, genes in enumerate(space.layer_gene_tuples(row)):
                fixed = self._repaired(space, table, i, genes)
                if fixed is not None:
                    row[space.genome.layer(i)] = fixed
        return X

    def _repaired(self, space, table, i: int, genes: tuple[int, ...]):
        """Layer ``i``'s genes moved to a legal pair, or None when they are legal (memoised:
        a layer has few distinct gene tuples, and a search repairs thousands of rows)."""
        key = (id(space), id(table), i, genes)
        if key not in self._memo:
            from qaev.hardware import repair

            cfg, fixed = space.layer_config(i, genes), None
            if cfg is not None:
                repaired = repair(cfg, space.searchable[i], table)
                if repaired != cfg:
                    row = np.zeros(space.n_var, dtype=int)
                    row[space.genome.layer(i)] = genes
                    fixed = space.encode_layer(repaired, row, i)
            self._memo[key] = fixed
        return self._memo[key]
