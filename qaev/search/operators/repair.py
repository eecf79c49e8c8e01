"""Repair: every candidate made legal for the target before it is evaluated."""
from __future__ import annotations

from pymoo.core.repair import Repair


__all__ = ["HardwareRepair"]


class HardwareRepair(Repair):
    """Rounds genes into range and, when the problem has a hardware table, moves every
    layer's (weight bits, activation) pair to the nearest one the target can represent
    (:func:`qaev.hardware.repair`), then re-encodes it."""

    def _do(self, problem, X, **kwargs):
        space = problem.space
        X = space.clip(X)
        table = getattr(problem, "table", None)
        if table is None:
            return X
        from qaev.hardware import repair

        for row in X:
            config = space.decode(row)
            for i, layer in enumerate(space.searchable):
                cfg = config.layers.get(layer.name)
                if cfg is None:
                    continue
                fixed = repair(cfg, layer, table)
                if fixed != cfg:
                    row[space.genome.layer(i)] = space.encode_layer(fixed, row, i)
        return X
