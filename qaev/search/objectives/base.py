"""What an objective is: how its value is computed for a candidate, whether that value is
measured, exact or estimated, and the name of the bound that constrains it."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Kind", "Objective"]


class Kind(str, Enum):
    """Where a value comes from (shown beside it everywhere)."""

    MEASURED = "measured"    # run with ONNX Runtime on data
    EXACT = "exact"          # counted
    ESTIMATED = "estimated"  # an analytic hardware table


@dataclass(frozen=True, kw_only=True)
class Objective:
    """One objective (subclass it and implement :meth:`value`).

    Attributes:
        name: registry key and the key in ``front.json``.
        kind: :class:`Kind`.
        unit: unit of the value.
        constraint: name of the upper bound on it (``max_...``; the CLI's ``--max-...``
            option); a bound on an estimate has ``est`` in its name.
        help: what the bound means, for the CLI.
        needs_hardware: needs a hardware table.
        needs_metric: needs the candidate's metric measured on the evaluation data.
        needs_model: needs the candidate's QDQ model built.
        quiet: measures time on this machine, so nothing else may run meanwhile.
    """

    name: str
    kind: Kind
    unit: str
    constraint: str
    help: str = ""
    needs_hardware: bool = False
    needs_metric: bool = False
    needs_model: bool = False
    quiet: bool = False

    def value(self, candidate) -> float:
        """The value for ``candidate`` (a :class:`qaev.evaluation.candidates.Candidate`)."""
        raise NotImplementedError
