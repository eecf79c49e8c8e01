"""Greedy-path points around the tolerance, where the recommended point is chosen.

The first population measures points spread along the greedy lowering path
(:func:`qaev.search.operators.sampling.path_rows`); the drop crosses the tolerance between
two of them, and the smallest point within tolerance (the one a user ships) lies there. Each
later generation of the predictor-led search measures a few more path points evenly between
the last path point measured within the tolerance and the first one measured beyond it: a
bisection along the path, several points at a time, so the front gains points at the sizes
where the choice is made instead of only where the first population's spacing put them.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BRACKET_SHARE", "tolerance_of", "bracket_rows"]

#: Share of each later generation's offspring spent on path points around the tolerance.
BRACKET_SHARE = 0.25


def tolerance_of(problem) -> float | None:
    """The bound on ``acc_drop`` among the problem's constraints (None: unbounded)."""
    bounds = [bound for name, bound in problem.scoring.constraints.values() if name == "acc_drop"]
    return min(bounds) if bounds else None


def bracket_rows(problem, path: list[np.ndarray], k: int, *, skip=frozenset()) -> list[np.ndarray]:
    """Up to ``k`` rows of ``path`` (genomes from the all-highest end down, the start left
    out) evenly between the last one measured within the tolerance and the first measured
    beyond it after that one; none measured or in ``skip`` (keys) already.

    The search-split drops of the measured path rows decide (a screened row's first-stage
    value too); before any path row beyond the tolerance is measured, the bracket runs to
    the end of the path. Empty without a tolerance or when the bracket holds no new row.
    """
    from qaev.search.predictor import training_records

    tolerance = tolerance_of(problem)
    if tolerance is None or k <= 0 or not path:
        return []
    keys = [problem.space.key(row) for row in path]
    drops = {r.key: r.objectives["acc_drop"] for r in training_records(problem, keys)}
    measured = [i for i, key in enumerate(keys) if key in drops]
    within = [i for i in measured if drops[keys[i]] <= tolerance]
    low = max(within, default=-1)
    high = min((i for i in measured if i > low), default=len(path))
    free = [i for i in range(low + 1, high) if keys[i] not in drops and keys[i] not in skip]
    if not free:
        return []
    picks = sorted({free[int(round(t))] for t in np.linspace(0, len(free) - 1, min(k, len(free)) + 2)[1:-1]}) \
        if len(free) > k else free
    return [path[i] for i in picks]
