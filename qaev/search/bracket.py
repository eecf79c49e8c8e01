"""Points around the tolerance, where the recommended point is chosen.

The first population measures points spread along the greedy lowering path
(:func:`qaev.search.operators.sampling.path_rows`); the drop crosses the tolerance between
two of them, and the smallest point within tolerance (the one a user ships) lies there. Each
later generation of the predictor-led search measures a few points at sizes evenly between
the smallest width-only point measured within the tolerance and the largest smaller one
measured beyond it: each made from that point by taking the path's later steps in order,
skipping any that would go below its target cost. One path step can be large (lowering an
embedding table's width: on MiniLM that one step spans the gap from 9.9x to 12.4x smaller),
so the points are spaced by cost, not by step: a bisection in cost, several points a
generation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qaev.search.width_rows import with_widths

__all__ = ["BRACKET_SHARE", "LoweringPath", "tolerance_of", "bracket_rows"]

#: Share of each later generation's offspring spent on points around the tolerance.
BRACKET_SHARE = 0.25


@dataclass(frozen=True)
class LoweringPath:
    """The greedy lowering path as steps, with the costs it trades.

    Attributes:
        base: the genome every path row shares but for its widths.
        genome: the layout of ``base`` (its ``w_bits`` columns hold the widths).
        costs: ``[layer, width index]`` -> the layer's cost.
        steps: ``(layer, width index before the step)`` in the path's order.
    """

    base: np.ndarray
    genome: object
    costs: np.ndarray
    steps: tuple

    @classmethod
    def of(cls, widths: list[np.ndarray], costs: np.ndarray, base: np.ndarray, genome) -> "LoweringPath":
        """From the path's width vectors (:func:`~qaev.sensitivity.lowering.greedy_path`)."""
        steps = tuple((int(np.flatnonzero(b != a)[0]), int(a[b != a][0])) for a, b in zip(widths, widths[1:]))
        return cls(base=np.asarray(base), genome=genome, costs=np.asarray(costs, float), steps=steps)

    def widths(self, row: np.ndarray) -> np.ndarray | None:
        """The widths of ``row``, or None when another gene differs from the path's."""
        row, column = np.asarray(row), self.genome.column("w_bits")
        rest = np.ones(len(row), bool)
        rest[column] = False
        return row[column].copy() if np.array_equal(row[rest], self.base[rest]) else None

    def row(self, widths: np.ndarray) -> np.ndarray:
        return with_widths(self.base, widths, self.genome)

    def cost(self, widths: np.ndarray) -> float:
        return float(self.costs[np.arange(len(widths)), widths].sum())

    def fill(self, start: np.ndarray, target: float) -> np.ndarray:
        """From ``start``, the path's steps in order, each taken when its layer is at the
        step's width and the cost stays at or above ``target``."""
        current, cost = np.array(start, copy=True), self.cost(start)
        for layer, j in self.steps:
            saved = self.costs[layer, j] - self.costs[layer, j - 1]
            if current[layer] == j and cost - saved >= target:
                current[layer], cost = j - 1, cost - saved
        return current


def tolerance_of(problem) -> float | None:
    """The bound on ``acc_drop`` among the problem's constraints (None: unbounded)."""
    bounds = [bound for name, bound in problem.scoring.constraints.values() if name == "acc_drop"]
    return min(bounds) if bounds else None


def bracket_rows(path: LoweringPath, measured: list[tuple[np.ndarray, float]], tolerance: float, k: int,
                 *, skip=frozenset(), key=None) -> list[np.ndarray]:
    """Up to ``k`` new rows at costs evenly between the smallest width-only row of
    ``measured`` (``(row, search-split drop)`` pairs) within ``tolerance`` (the all-highest
    start when none is) and the largest cheaper one beyond it (the all-lowest end when none
    is), each :meth:`LoweringPath.fill`-ed from the former; none measured or whose ``key``
    is in ``skip``."""
    key = key or (lambda row: row.tobytes())
    known = [(w, d) for w, d in ((path.widths(r), d) for r, d in measured) if w is not None]
    top = np.array([len(c) - 1 for c in path.costs])
    within = [w for w, d in known if d <= tolerance] or [top]
    start = min(within, key=path.cost)
    high = path.cost(start)
    lower = [path.cost(w) for w, d in known if d > tolerance and path.cost(w) < high]
    low = max(lower, default=path.cost(np.zeros_like(top)))
    seen = {key(path.row(w)) for w, _ in known} | set(skip)
    out = []
    for target in np.linspace(high, low, k + 2)[1:-1] if k > 0 else []:
        widths = path.fill(start, target)
        row = path.row(widths)
        if key(row) not in seen and path.cost(widths) < high:
            seen.add(key(row))
            out.append(row)
    return out
