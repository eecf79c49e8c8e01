"""Gene rows that give each searchable layer one weight width, every other gene uniform.

The greedy lowering path's points (:mod:`qaev.sensitivity.lowering`), the allocation baselines'
candidates and the search's sensitivity seeding are all rows of this kind.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from qaev.config import ACT_SETTINGS
from qaev.errors import ConfigError

__all__ = ["uniform_row", "with_widths", "allowed_acts", "check_act", "weight_only_act"]


def uniform_row(space, *, w_index: int, act: str) -> np.ndarray:
    """Genes giving every searchable layer ``space.w_bits[w_index]`` and activation ``act``
    (the space's nearest option when ``act`` is not allowed)."""
    row = space.encode_uniform(w_bits=space.w_bits[0], act=act)
    row[space.genome.column("w_bits")] = w_index
    return row


def with_widths(row: np.ndarray, w_index: Sequence[int], genome) -> np.ndarray:
    """A copy of ``row`` (of ``genome``'s layout) with searchable layer ``i`` at width index
    ``w_index[i]``."""
    out = np.array(row, copy=True)
    out[genome.column("w_bits")] = np.asarray(w_index, dtype=int)
    return out


def allowed_acts(space) -> list[str]:
    """The activation settings (keys of :data:`qaev.config.ACT_SETTINGS`, in its
    order) that ``space`` allows."""
    return [name for name, option in ACT_SETTINGS.items() if option in space.acts]


def check_act(space, act: str) -> None:
    """Raise :class:`ConfigError` unless the space allows activation setting ``act``."""
    allowed = allowed_acts(space)
    if act not in allowed:
        raise ConfigError(f"act: {act!r} is not allowed by the search space (allowed: {', '.join(allowed)})")


def weight_only_act(space) -> str:
    """``float`` where the space allows float activations (weight-only), else its first setting."""
    allowed = allowed_acts(space)
    return "float" if "float" in allowed else allowed[0]
