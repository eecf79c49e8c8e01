"""``est_energy_mj``: energy on the hardware target from its cost table (an estimate)."""
from __future__ import annotations

from qaev.search.objectives.base import Kind, Objective

__all__ = ["EstEnergy", "OBJECTIVE"]


class EstEnergy(Objective):
    """The analytic energy estimate of :func:`qaev.hardware.cost.estimate`."""

    def value(self, candidate) -> float:
        return candidate.cost().est_energy_mj


OBJECTIVE = EstEnergy(name="est_energy_mj", kind=Kind.ESTIMATED, unit="mJ (analytic)", constraint="max_est_energy_mj",
                      help="estimated energy on --hardware at most (an estimate)", needs_hardware=True)
