"""Non-dominated sets and normalised hypervolume of evaluated candidates."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

__all__ = ["non_dominated", "hypervolume", "REF_POINT"]

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
