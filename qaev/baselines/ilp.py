"""A HAWQ-style allocation: per-layer sensitivity, then an exact knapsack per cost budget.

Yao et al., "HAWQ-V3: Dyadic Neural Network Quantization" (ICML 2021) choose each layer's
bits with an integer linear program: minimise the summed per-layer sensitivity subject to
a size, BOPs or latency budget, solved once per budget. HAWQ's sensitivity is a Hessian
trace times the weight perturbation; here it is the *measured* metric drop of quantizing
the layer alone (:func:`qaev.sensitivity.probes.layer_sensitivity`), with the output noise power
as a tie-breaker. The program assumes drops add up across layers; every solution is then
measured, so the assumption is checked, not trusted. One point per budget, no front of its
own beyond the sweep.
"""
from __future__ import annotations

import time

import numpy as np

from qaev.baselines.budget import EvaluationBudget, charged_evaluations
from qaev.baselines.result import MethodResult, Point
from qaev.errors import ConfigError
from qaev.sensitivity.layer_costs import layer_costs
from qaev.sensitivity.lowering import spread
from qaev.sensitivity.probes import layer_sensitivity
from qaev.search.width_rows import check_act, uniform_row, with_widths

__all__ = ["ilp_baseline", "solve_allocation", "sensitivity_scores"]

_TIE = 1e-3  # weight of the output noise power (<= ~1) beside drops in metric points


def solve_allocation(scores: np.ndarray, costs: np.ndarray, limit: float) -> np.ndarray | None:
    """The exact knapsack: one width per layer minimising summed ``scores`` with summed
    ``costs`` at most ``limit`` (``scipy.optimize.milp``, HiGHS branch and bound).

    Returns:
        The width index of each layer, or None when no choice fits ``limit``.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    n_layers, n_widths = scores.shape
    one_each = np.kron(np.eye(n_layers), np.ones(n_widths))
    constraints = [LinearConstraint(one_each, 1, 1), LinearConstraint(costs.reshape(1, -1), -np.inf, limit)]
    res = milp(scores.ravel(), constraints=constraints, integrality=np.ones(scores.size), bounds=Bounds(0, 1))
    if res.status != 0 or res.x is None:
        return None
    return np.asarray(res.x).reshape(n_layers, n_widths).argmax(axis=1)


def sensitivity_scores(table, w_bits, layers) -> np.ndarray:
    """``[layer, width]`` -> drop clipped at 0 plus a small multiple of the output noise
    power ``10^(-SQNR/10)`` (breaks the ties of widths that lose nothing measurable)."""
    drops = np.maximum(table.matrix(w_bits, layers=layers), 0.0)
    sqnr = table.sqnr_matrix(w_bits, layers=layers)
    with np.errstate(over="ignore"):
        noise = np.where(np.isfinite(sqnr), 10.0 ** (-np.nan_to_num(sqnr, nan=0.0) / 10.0), 0.0)
    noise[sqnr == -np.inf] = 1.0
    noise[np.isnan(sqnr)] = noise.max() if noise.size else 0.0  # not probed or failed: pessimistic
    return drops + _TIE * np.minimum(noise, 1.0)


def _probe_plan(problem, *, budget: int, act: str, sweep_share: float,
                sqnr_samples: int | None) -> tuple[int, float, float]:
    """How many layers the budget can probe, and what their SQNR tie-breakers cost.

    Returns:
        ``(n_probed, sqnr_size, sqnr_passes)``: the layers probed, the samples behind one
        probe's SQNR and the passes of the evaluation data all those SQNRs take.
    """
    space = problem.space
    per_layer = len(space.w_bits) - (1 if act == "float" and None in space.w_bits else 0)
    reserve = max(2, int(budget * sweep_share))
    n_set = len(problem.evaluator.data)
    share = (n_set if sqnr_samples is None else min(sqnr_samples, n_set)) / n_set  # one SQNR, in passes
    n_probed = max(0, min(len(space.searchable), int((budget - reserve) // (max(per_layer, 1) * (1 + share)))))
    return n_probed, share * n_set, n_probed * per_layer * share


def _sweep_solutions(scores: np.ndarray, costs: np.ndarray, *, n_grid: int) -> list[tuple[tuple, float]]:
    """The distinct knapsack solutions over ``n_grid`` evenly spaced cost limits.

    Returns:
        ``(choice, limit)`` pairs, the dearest limit first; each choice keeps the first
        (lowest) limit that produced it.
    """
    lo, hi = float(costs.min(axis=1).sum()), float(costs.max(axis=1).sum())
    solutions: dict[tuple, float] = {}
    for limit in np.linspace(lo, hi, n_grid):
        choice = solve_allocation(scores, costs, float(limit) * (1 + 1e-12))
        if choice is not None:
            solutions.setdefault(tuple(int(j) for j in choice), float(limit))
    return sorted(solutions.items(), key=lambda kv: -kv[1])  # dearest first


def _measure_solutions(space, counter: EvaluationBudget, found: list[tuple[tuple, float]], *, scores: np.ndarray,
                       costs: np.ndarray, cost: str, act: str) -> tuple[list[Point], list[str]]:
    """Measure the solutions already counted plus as many others, evenly spread, as the
    budget has left.

    Returns:
        The points, in solution order, and the notes (one when some go unmeasured).
    """
    base_row = uniform_row(space, w_index=len(space.w_bits) - 1, act=act)
    configs = [space.decode(with_widths(base_row, choice, space.genome)) for choice, _ in found]
    free = [k for k, c in enumerate(configs) if counter.seen(c)]
    chosen = sorted(free + spread([k for k in range(len(found)) if k not in set(free)], counter.remaining or 0))
    notes = []
    if len(chosen) < len(found):
        notes.append(f"measured {len(chosen)} of {len(found)} distinct solutions")
    points = []
    for k in chosen:
        choice, limit = found[k]
        predicted = float(sum(costs[i, j] for i, j in enumerate(choice)))
        points.append(Point.from_record(
            counter.evaluate(configs[k]), f"{cost} <= {limit:.4g}", limit=limit, cost=cost,
            predicted_cost=predicted, predicted_score=float(sum(scores[i, j] for i, j in enumerate(choice))),
            w_bits=[space.w_bits[j] for j in choice]))
    return points, notes


def ilp_baseline(problem, *, budget: int, cost: str = "size_mb", act: str = "a8", sweep_share: float = 1 / 3,
                 sqnr_samples: int | None = 32) -> MethodResult:
    """HAWQ-style allocation over a sweep of cost budgets within ``budget`` evaluations.

    Probes each searchable layer alone at each allowed width (others float), then solves
    the knapsack for evenly spaced cost limits between the cheapest and the dearest
    allocation, and measures the distinct solutions (evenly spread when there are more
    than the evaluations left). When the budget cannot cover the probes and ``sweep_share``
    of itself for solutions, only the layers saving the most cost are probed; the others
    count as sensitive as the worst probed layer.

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem`.
        budget: full evaluations (probes and solutions together).
        cost: the budgeted cost: ``size_mb`` (exact), ``est_latency_ms`` or
            ``est_energy_mj`` (hardware-table estimates, additive approximation).
        act: activation setting of every layer (``a8`` when the space allows it).
        sweep_share: fraction of the budget kept for measuring solutions.
        sqnr_samples: samples behind each probe's SQNR (the tie-breaker; None: every
            sample, 0: none). Those inferences are charged to ``budget`` in passes of the
            evaluation data, rounded up to whole evaluations (``MethodResult.passes``
            holds the exact count).

    Returns:
        One point per measured solution, ``extra`` holding its cost ``limit`` and the
        program's ``predicted_cost``.
    """
    start = time.perf_counter()
    space = problem.space
    names = [layer.name for layer in space.searchable]
    if budget < 2:
        raise ConfigError(f"ilp: a budget of {budget} evaluations is too small (at least 2)")
    check_act(space, act)
    costs = layer_costs(problem, cost=cost, act=act)
    n_probed, sqnr_size, sqnr_passes = _probe_plan(problem, budget=budget, act=act,
                                                   sweep_share=sweep_share, sqnr_samples=sqnr_samples)
    sqnr_charge = charged_evaluations(sqnr_passes)
    counter = EvaluationBudget(problem, budget - sqnr_charge)
    order = np.argsort(-(costs.max(axis=1) - costs.min(axis=1)), kind="stable")[:n_probed]
    probed = [names[i] for i in sorted(order)]
    notes = [] if n_probed == len(names) else [
        f"probed {n_probed} of {len(names)} layers within the budget; the others count as sensitive as the worst"]
    if not probed:
        raise ConfigError(f"ilp: a budget of {budget} evaluations cannot probe a single layer")
    table = layer_sensitivity(problem, bits=space.w_bits, act=act, layers=probed, evaluate=counter.evaluate,
                              sqnr_samples=sqnr_samples)
    scores = sensitivity_scores(table, space.w_bits, names)
    found = _sweep_solutions(scores, costs, n_grid=int(min(100, max(16, 2 * (counter.remaining or 0)))))
    points, measure_notes = _measure_solutions(space, counter, found, scores=scores, costs=costs, cost=cost, act=act)
    notes += measure_notes
    if sqnr_passes:
        notes.append(f"SQNR tie-breakers on {sqnr_size:.0f} samples per probe: {sqnr_passes:.1f} passes "
                     "charged to the budget")
    return MethodResult(method="ilp", points=tuple(points), evaluations=counter.used + sqnr_charge,
                        wall_s=time.perf_counter() - start, passes=counter.used + sqnr_passes, notes=tuple(notes))
