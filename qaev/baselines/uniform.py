"""Uniform baselines: one setting on every quantizable layer, as people try first."""
from __future__ import annotations

import time
from typing import Mapping

from qaev.baselines.budget import BudgetExhausted, EvaluationBudget
from qaev.baselines.result import MethodResult, Point
from qaev.config import ActMode, Granularity, LayerConfig
from qaev.quantize import uniform_config

__all__ = ["UNIFORM_SETTINGS", "uniform_baseline"]

#: Label -> the setting applied to every layer (fitted to what each layer supports).
UNIFORM_SETTINGS: Mapping[str, LayerConfig] = {
    "W8A8": LayerConfig(w_bits=8, act=ActMode.STATIC, a_bits=8, granularity=Granularity.PER_CHANNEL),
    "W4A8": LayerConfig(w_bits=4, act=ActMode.STATIC, a_bits=8, granularity=Granularity.PER_CHANNEL),
    "W8 weight-only": LayerConfig(w_bits=8, act=ActMode.FLOAT, granularity=Granularity.PER_CHANNEL),
    "W4 weight-only": LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.PER_CHANNEL),
}


def uniform_baseline(problem, *, settings: Mapping[str, LayerConfig] | None = None,
                     budget: int | None = None) -> MethodResult:
    """Evaluate each uniform setting on every quantizable layer of the model (per-channel
    symmetric weights, minmax calibration), whatever the search space allows.

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem` (its evaluator and store).
        settings: label -> :class:`LayerConfig` (default :data:`UNIFORM_SETTINGS`).
        budget: most full evaluations (None: one per setting).

    Returns:
        One point per setting.
    """
    start = time.perf_counter()
    counter = EvaluationBudget(problem, budget)
    points, notes = [], []
    for label, cfg in (settings or UNIFORM_SETTINGS).items():
        try:
            record = counter.evaluate(uniform_config(problem.quantizer.layers, cfg))
        except BudgetExhausted:
            notes.append(f"budget spent before {label}")
            break
        points.append(Point.from_record(record, label, setting=cfg.to_dict()))
    return MethodResult(method="uniform", points=tuple(points), evaluations=counter.used,
                        wall_s=time.perf_counter() - start, notes=tuple(notes))
