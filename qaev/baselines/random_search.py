"""Random search: uniformly random genomes of the search space, on the same budget."""
from __future__ import annotations

import time

import numpy as np

from qaev.baselines.budget import EvaluationBudget
from qaev.baselines.result import MethodResult, Point

__all__ = ["random_baseline"]


def random_baseline(problem, *, budget: int, seed: int = 0, max_draws: int | None = None) -> MethodResult:
    """Draw genes uniformly at random (every gene, every option) and evaluate each new
    effective config until ``budget`` distinct configs were evaluated; the control of
    Bergstra and Bengio ("Random Search for Hyper-Parameter Optimization", JMLR 2012).

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem`.
        budget: full evaluations.
        seed: seed of the generator (same seed, same points).
        max_draws: give up after this many draws (default ``50 * budget``), for spaces
            with fewer distinct configs than the budget.

    Returns:
        Every evaluated point, in draw order.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    counter = EvaluationBudget(problem, budget)
    upper = problem.space.upper()
    points, draws, limit = [], 0, max_draws or 50 * max(budget, 1)
    while counter.remaining and draws < limit:
        draws += 1
        config = problem.space.decode(rng.integers(0, upper + 1))
        if counter.seen(config):
            continue
        points.append(Point.from_record(counter.evaluate(config), f"draw {draws}"))
    notes = () if counter.remaining == 0 else (f"stopped after {draws} draws: space smaller than the budget",)
    return MethodResult(method="random", points=tuple(points), evaluations=counter.used,
                        wall_s=time.perf_counter() - start, notes=notes)
