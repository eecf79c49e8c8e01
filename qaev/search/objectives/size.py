"""``size_mb``: exact weight storage by bit count, scales and zero points included."""
from __future__ import annotations

from qaev.search.objectives.base import Kind, Objective

__all__ = ["Size", "OBJECTIVE"]


class Size(Objective):
    """:func:`qaev.quantize.sizes.model_bytes` in MB."""

    def value(self, candidate) -> float:
        return candidate.model_bytes() / 1e6


OBJECTIVE = Size(name="size_mb", kind=Kind.EXACT, unit="MB of weights incl. scales and zero points",
                 constraint="max_size_mb", help="weights at most this many MB (exact bit count)")
