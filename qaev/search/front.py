"""Non-dominated sets and normalised hypervolume of evaluated candidates."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

__all__ = ["non_dominated", "hypervolume", "hypervolume_ceiling", "tolerance_hypervolume", "REF_POINT"]

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
