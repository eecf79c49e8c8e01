"""``est_latency_ms``: latency on the hardware target from its cost table (an estimate)."""
from __future__ import annotations

from qaev.search.objectives.base import Kind, Objective

__all__ = ["EstLatency", "OBJECTIVE"]


class EstLatency(Objective):
    """The analytic roofline estimate of :func:`qaev.hardware.cost.estimate`."""

    def value(self, candidate) -> float:
        return candidate.cost().est_latency_ms


OBJECTIVE = EstLatency(name="est_latency_ms", kind=Kind.ESTIMATED, unit="ms (analytic roofline)",
                       constraint="max_est_latency_ms", help="estimated latency on --hardware at most (an estimate)",
                       needs_hardware=True)
