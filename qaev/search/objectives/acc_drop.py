"""``acc_drop``: metric points lost against the float model on the same data (measured)."""
from __future__ import annotations

from qaev.search.objectives.base import Kind, Objective

__all__ = ["AccDrop", "OBJECTIVE"]


class AccDrop(Objective):
    """The measured drop (staged or screened where the search says so)."""

    def value(self, candidate) -> float:
        return candidate.drop


OBJECTIVE = AccDrop(name="acc_drop", kind=Kind.MEASURED, unit="metric points lost vs float", constraint="max_drop",
                    help="metric points lost at most (measured)", needs_metric=True, needs_model=True)
