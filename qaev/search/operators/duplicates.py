"""Duplicate elimination on the effective config, not on the raw genes."""
from __future__ import annotations

from pymoo.core.duplicate import DuplicateElimination

__all__ = ["EffectiveDuplicateElimination"]


class EffectiveDuplicateElimination(DuplicateElimination):
    """Two genomes are duplicates when they decode to the same effective config (genes
    that cannot change the built model, such as the activation bits of a weight-only
    layer, are ignored)."""

    def __init__(self, space) -> None:
        super().__init__()
        self.space = space

    def _do(self, pop, other, is_duplicate):
        seen = set()
        if other is not None:
            seen = {self.space.key(ind.X) for ind in other}
        for i, ind in enumerate(pop):
            key = self.space.key(ind.X)
            if key in seen:
                is_duplicate[i] = True
            else:
                seen.add(key)
        return is_duplicate
