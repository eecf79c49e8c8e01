"""Non-dominated sets and normalised hypervolume of evaluated candidates."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

__all__ = ["non_dominated", "near_front", "hypervolume", "hypervolume_ceiling", "tolerance_hypervolume", "REF_POINT"]

#: Reference point in normalised objective space (1.0 = the float model's value).
REF_POINT = 1.1


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (minimisation); exact duplicates keep one."""
    F = np.asarray(F, float)
    if len(F) == 0:
        return np.zeros(0, int)
    _, first = np.unique(F, axis=0, return_index=True)
    first = np.sort(first)
    front = NonDominatedSorting().do(F[first], only_non_dominated_front=True)
    return first[np.sort(front)]


#: Costs within this share of each other count as the same cost for :func:`near_front`.
SAME_COST = 0.02


def near_front(F: np.ndarray, slack: Sequence[float], *, drop: int, most: int | None = None) -> np.ndarray:
    """Indices of the non-dominated rows of ``F`` (:func:`non_dominated`), then of the rows
    within their ``slack`` of it: dominated, but by no row of the same or lower cost in every
    other column whose column ``drop`` is lower by ``slack`` or more (a row's slack: its
    drop's noise, e.g. one standard error; rows whose slack is not positive are never
    added). Those are the points the measurement cannot tell from the front: a smaller point
    that read lucky dominates them on its one reading. At most ``most`` of them are added
    (default: as many as the front has), the nearest first (least gap in units of their
    slack), and none whose every cost is within :data:`SAME_COST` of a row already kept that
    has no higher drop (a copy of a kept point at the same size is no fallback for it)."""
    F, slack = np.asarray(F, float), np.asarray(slack, float)
    strict = non_dominated(F)
    most = len(strict) if most is None else most
    if len(F) == 0 or most == 0:
        return strict
    costs = [k for k in range(F.shape[1]) if k != drop]
    candidates = []
    for i in range(len(F)):
        cheaper = np.all(F[:, costs] <= F[i, costs], axis=1)
        cheaper[i] = False
        gap = F[i, drop] - F[cheaper, drop].min() if cheaper.any() else -np.inf
        if slack[i] > 0 and 0 <= gap < slack[i]:
            candidates.append((gap / slack[i], i))
    kept = list(strict)
    for _, i in sorted(candidates):
        if len(kept) - len(strict) >= most:
            break
        same = np.all(np.abs(F[kept][:, costs] - F[i, costs]) <= SAME_COST * np.abs(F[i, costs]), axis=1)
        if not np.any(same & (F[kept, drop] <= F[i, drop])):
            kept.append(i)
    return np.array(kept, int)


def normalise(F: np.ndarray, scale: Sequence[float]) -> np.ndarray:
    """Divide each objective by its reference magnitude (the float model's value; for
    ``acc_drop`` the float metric)."""
    return np.asarray(F, float) / np.maximum(np.abs(np.asarray(scale, float)), 1e-12)


def hypervolume(F: np.ndarray, scale: Sequence[float]) -> float:
    """Hypervolume of ``F`` normalised by ``scale`` with reference point ``REF_POINT`` in
    every objective (points beyond it contribute nothing)."""
    G = normalise(F, scale)
    if len(G) == 0:
        return 0.0
    G = G[np.all(G < REF_POINT, axis=1)]
    if len(G) == 0:
        return 0.0
    return float(HV(ref_point=np.full(G.shape[1], REF_POINT))(G))


def hypervolume_ceiling(F: np.ndarray, scale: Sequence[float]) -> float:
    """:func:`hypervolume` of the ideal point of ``F`` (every objective's best value, all in
    one point): no front of points that are each no better than ``F``'s best in any
    objective can exceed it. With ``F`` the union of several methods' points, it bounds what
    any of their ratios could have been."""
    F = np.asarray(F, float)
    if len(F) == 0:
        return 0.0
    return hypervolume(F.min(axis=0, keepdims=True), scale)


def tolerance_hypervolume(F: np.ndarray, scale: Sequence[float], *, drop: int, tolerance: float) -> float:
    """Share of the box "accuracy drop 0..``tolerance`` metric points x every cost 0..float"
    that ``F`` dominates, in [0, 1].

    Column ``drop`` of ``F`` is the accuracy drop in metric points, clipped at 0 (no credit for
    measuring better than float); the other columns are divided by ``scale`` (their float
    values) and bounded by 1. Points beyond the tolerance or costlier than float count for
    nothing. With one cost it reads as the mean saving over tolerances: the average, over
    every allowed drop t from 0 to ``tolerance``, of 1 minus the smallest cost (as a share of
    float's) among the points within t.
    """
    if tolerance <= 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")
    F = np.asarray(F, float)
    if len(F) == 0:
        return 0.0
    G = normalise(F, scale)
    G[:, drop] = np.maximum(F[:, drop], 0.0)
    ref = np.ones(F.shape[1])
    ref[drop] = tolerance
    G = G[np.all(G < ref, axis=1)]
    if len(G) == 0:
        return 0.0
    return float(HV(ref_point=ref)(G)) / float(np.prod(ref))
