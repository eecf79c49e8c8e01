"""Gene rows the allocation baselines build: one weight-bit index per searchable layer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from qaev.errors import ConfigError
from qaev.sensitivity import ACT_CHOICES
from qaev.space import GENES_PER_LAYER

__all__ = ["uniform_row", "with_widths", "widths_of", "check_act"]


def uniform_row(space, *, w_index: int, act: str) -> np.ndarray:
    """Genes giving every searchable layer ``space.w_bits[w_index]`` and activation ``act``
    (the space's nearest option when ``act`` is not allowed)."""
    row = space.encode_uniform(w_bits=space.w_bits[0], act=act)
    row[0:GENES_PER_LAYER * len(space.searchable):GENES_PER_LAYER] = w_index
    return row


def with_widths(row: np.ndarray, w_index: Sequence[int]) -> np.ndarray:
    """A copy of ``row`` with searchable layer ``i`` at width index ``w_index[i]``."""
    out = np.array(row, copy=True)
    out[0:GENES_PER_LAYER * len(w_index):GENES_PER_LAYER] = np.asarray(w_index, dtype=int)
    return out


def widths_of(row: np.ndarray, n_layers: int) -> np.ndarray:
    """The width index of each of the ``n_layers`` searchable layers in ``row``."""
    return np.asarray(row[0:GENES_PER_LAYER * n_layers:GENES_PER_LAYER], dtype=int)


def check_act(space, act: str) -> None:
    """Raise :class:`ConfigError` unless the space allows activation setting ``act``."""
    allowed = [name for name, option in ACT_CHOICES.items() if option in space.acts]
    if act not in allowed:
        raise ConfigError(f"act: {act!r} is not allowed by the search space (allowed: {', '.join(allowed)})")
