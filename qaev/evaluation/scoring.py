"""Records as the search scores them: objective rows, constraint rows and the front of the
fully measured records."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from qaev.evaluation.staging import Finish, Staging
from qaev.runtime.store import Record
from qaev.search.front import near_front, non_dominated

__all__ = ["Scoring", "FAILED", "NEAR_Z", "near_slack"]

#: Objective value given to a candidate whose evaluation failed (never on a front).
FAILED = 1e9
#: The front also keeps the points it dominates by less than this many standard errors of
#: their drop (:func:`~qaev.search.front.near_front`), at most as many as it has.
NEAR_Z = 1.0


def near_slack(drop_se: Sequence[float | None], *, z: float = NEAR_Z) -> list[float]:
    """Each point's slack for :func:`~qaev.search.front.near_front`: ``z`` standard errors
    of its drop, 0 (never added) for a point without one."""
    return [z * se if se is not None else 0.0 for se in drop_se]


@dataclass(frozen=True)
class Scoring:
    """How records become pymoo rows.

    Attributes:
        objectives: objective names, in column order.
        constraints: constraint name -> (the objective it bounds, the bound).
        staging: the run's staging (None: every record is a full measurement).
        near: standard errors of a record's drop (``Record.drop_se``) by which the front may
            beat it and still keep it (:meth:`front`); 0: the non-dominated records only.
    """

    objectives: tuple[str, ...]
    constraints: Mapping[str, tuple[str, float]]
    staging: Staging | None = None
    near: float = NEAR_Z

    @property
    def screening(self) -> bool:
        """Whether the search runs on first-stage values (``Finish.END``)."""
        return self.staging is not None and self.staging.finish is Finish.END

    def as_searched(self, record: Record) -> Record:
        """The record as the search saw it: with screening, its first-stage drop, even
        after it was measured fully (so a resumed search takes the same path)."""
        if not self.screening or record.screen is None:
            return record
        return replace(record, objectives={**record.objectives, "acc_drop": record.screen.drop})

    def objective_vector(self, record: Record) -> list[float]:
        """The record's values in objective order (failed candidates get :data:`FAILED`)."""
        return [FAILED if not record.ok or record.objectives.get(n) is None else float(record.objectives[n])
                for n in self.objectives]

    def constraint_vector(self, record: Record) -> list[float]:
        """pymoo ``G`` row: value - bound (<= 0 is feasible)."""
        return [(FAILED if not record.ok or record.objectives.get(name) is None
                 else float(record.objectives[name]) - bound) for name, bound in self.constraints.values()]

    def feasible(self, record: Record) -> bool:
        """Whether ``record`` meets every constraint."""
        return not self.constraints or max(self.constraint_vector(record)) <= 0

    def slack(self, row: np.ndarray) -> np.ndarray:
        """Per-objective epsilon of staging's dominance checks at ``row``."""
        return np.array([self.staging.eps_drop if n == "acc_drop" else self.staging.eps_rel * abs(v)
                         for n, v in zip(self.objectives, row)])

    def front_matrix(self, records: Iterable[Record]) -> np.ndarray:
        """Objective rows of the fully measured, successful, non-dominated records."""
        rows = [self.objective_vector(r) for r in records if r.ok and r.final]
        if not rows:
            return np.zeros((0, len(self.objectives)))
        F = np.array(rows)
        return F[non_dominated(F)]

    def front(self, records: Sequence[Record], *, provisional: bool = False) -> list[Record]:
        """Non-dominated, feasible, successful records (fully measured ones only, unless
        ``provisional``: screened ones too, by first-stage values), then those the front
        beats by less than ``near`` standard errors of their drop, at most as many: a point
        that read lucky on the search split would otherwise hide every larger point that
        measured a little worse, and the choice on the validation split could not fall back
        on them."""
        chosen = [r for r in records if r.ok and (provisional or r.final)
                  and all(r.objectives.get(n) is not None for n in self.objectives) and self.feasible(r)]
        if not chosen:
            return []
        F = np.array([self.objective_vector(r) for r in chosen])
        if self.near <= 0 or "acc_drop" not in self.objectives:
            return [chosen[i] for i in non_dominated(F)]
        slack = near_slack([r.drop_se if r.final else None for r in chosen], z=self.near)
        return [chosen[i] for i in near_front(F, slack, drop=self.objectives.index("acc_drop"))]
