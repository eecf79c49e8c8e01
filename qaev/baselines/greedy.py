"""An AIMET-AMP-style greedy path: lower one layer one step at a time, cheapest first.

Qualcomm AIMET, "Automatic Mixed Precision" (AMP; AIMET documentation): measure each
layer's sensitivity with the others at the highest candidate, build one Pareto path by
repeatedly lowering the layer with the smallest accuracy loss per unit of cost saved (AIMET
uses BOPs; here exact size or an estimated latency/energy), then evaluate points on that
path. One path, not a front: that is the weakness a multi-objective search exploits.
"""
from __future__ import annotations

import time

import numpy as np

from qaev.baselines.budget import EvaluationBudget
from qaev.baselines.result import MethodResult, Point
from qaev.errors import ConfigError
from qaev.sensitivity.layer_costs import layer_costs
from qaev.sensitivity.lowering import greedy_path, spread
from qaev.sensitivity.probes import layer_sensitivity
from qaev.search.width_rows import check_act, uniform_row, with_widths

__all__ = ["greedy_baseline", "greedy_path"]


def _probe_sensitivities(problem, counter: EvaluationBudget, costs: np.ndarray, *, base, base_drop: float, act: str,
                         budget: int, path_share: float) -> tuple[np.ndarray, list[str]]:
    """Phase 1: probe the layers saving the most cost at every lower width, within what
    the budget leaves beside ``path_share`` of itself for phase 3.

    Returns:
        ``(sens, notes)``: the ``[layer, width]`` drops (``base_drop`` at the highest width,
        and everywhere when no layer is probed; a layer not probed counts as the worst
        probed one) and notes on what was left out.
    """
    space = problem.space
    names = [layer.name for layer in space.searchable]
    n_widths = len(space.w_bits)
    reserve = min(len(names) * (n_widths - 1), max(2, int(budget * path_share)))
    n_probed = max(0, min(len(names), (budget - 1 - reserve) // (n_widths - 1)))
    order = np.argsort(-(costs[:, -1] - costs[:, 0]), kind="stable")[:n_probed]
    probed = [names[i] for i in sorted(order)]
    notes = []
    if n_probed < len(names):
        notes.append(f"probed {n_probed} of {len(names)} layers within the budget; the others count as sensitive "
                     "as the worst probed layer")
    sens = np.full((len(names), n_widths), base_drop)
    if probed:
        table = layer_sensitivity(problem, bits=space.w_bits[:-1], act=act, base=base, layers=probed,
                                  evaluate=counter.evaluate, sqnr_samples=0)
        sens[:, :-1] = table.matrix(space.w_bits[:-1], layers=names)
    else:
        notes.append("no layer probed: the path follows cost alone")
    return sens, notes


def _affordable(configs: list, counter: EvaluationBudget) -> list[int]:
    """Indices of the ``configs`` to evaluate: those already counted (free) plus as many
    others, evenly spread, as the budget has left."""
    free = [k for k, c in enumerate(configs) if counter.seen(c)]
    rest = [k for k in range(len(configs)) if k not in set(free)]
    return sorted(free + spread(rest, counter.remaining or 0))


def greedy_baseline(problem, *, budget: int, cost: str = "size_mb", act: str = "a8",
                    path_share: float = 1 / 3) -> MethodResult:
    """Run the AMP-style greedy path within ``budget`` full evaluations.

    Phase 1 probes every searchable layer at every lower width with the others at the
    highest allowed width (``1 + layers * (widths - 1)`` evaluations); phase 2 builds the
    path from those measurements (no evaluations); phase 3 evaluates path points, evenly
    spread, with what is left. When the budget cannot cover phase 1 and ``path_share`` of
    itself for phase 3, only the layers saving the most cost are probed and the others
    count as sensitive as the worst probed layer.

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem`.
        budget: full evaluations.
        cost: what a step saves: ``size_mb`` (exact), ``est_latency_ms`` or
            ``est_energy_mj`` (hardware-table estimates).
        act: activation setting of every layer (``a8`` when the space allows it).
        path_share: fraction of the budget kept for phase 3.

    Returns:
        The evaluated path points, from the highest precision down (``extra["step"]``).
    """
    start = time.perf_counter()
    space = problem.space
    n_widths = len(space.w_bits)
    if n_widths < 2:
        raise ConfigError("greedy: the search space allows a single weight width; nothing to lower")
    if budget < 2:
        raise ConfigError(f"greedy: a budget of {budget} evaluations is too small (at least 2)")
    check_act(space, act)
    counter = EvaluationBudget(problem, budget)
    costs = layer_costs(problem, cost=cost, act=act)
    base_row = uniform_row(space, w_index=n_widths - 1, act=act)
    base = space.decode(base_row)
    base_drop = float(counter.evaluate(base).objectives.get("acc_drop", np.nan))
    sens, notes = _probe_sensitivities(problem, counter, costs, base=base, base_drop=base_drop, act=act,
                                       budget=budget, path_share=path_share)
    path = greedy_path(sens, costs)
    configs = [space.decode(with_widths(base_row, w, space.genome)) for w in path]
    chosen = _affordable(configs, counter)
    if len(chosen) < len(configs):
        notes.append(f"evaluated {len(chosen)} of {len(configs)} path points")
    points = [Point.from_record(counter.evaluate(configs[k]), f"step {k}", step=k,
                                w_bits=[space.w_bits[j] for j in path[k]]) for k in chosen]
    return MethodResult(method="greedy", points=tuple(points), evaluations=counter.used,
                        wall_s=time.perf_counter() - start, notes=tuple(notes))
