"""Staged evaluation: a race over growing prefixes of the evaluation set.

A candidate runs batch by batch; at each stage boundary (a growing share of the data) its
metric drop so far, minus a margin of ``z`` bootstrap standard errors, is compared with
the fully measured front. A candidate that is dominated even so stops there (its record's
stage is ``subset``); one that survives every boundary finishes the set in the same
batches a plain evaluation uses, so its full measurement is identical to an unstaged one.
Racing in the spirit of Maron & Moore, "Hoeffding Races" (NIPS 1993), with growing
samples as in successive halving (Jamieson & Talwalkar, AISTATS 2016) and a paired
bootstrap margin instead of a Hoeffding bound.

With ``finish=Finish.END`` the search itself runs on the first stage only (every candidate
is measured on the same first share of the set, so they compare like with like; records
have stage ``screen``), and after the search the screened candidates that no screened
rival beats with paired confidence (:func:`qaev.evaluation.screening.promising`) are raced to the
full set. Only the fully measured records form the final front, as in the default
mode; the search's own trajectory never sees a full-set value.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["Staging", "Finish", "dominated", "is_final", "SIMULATE_BELOW_MACS"]

#: ``Staging(simulate=None)`` screens on the simulated graph when a first stage (its items
#: times the model's multiply-accumulates per item) costs fewer than this: about 50 ms of
#: float inference on one core of a current CPU, where opening sessions rivals running them.
SIMULATE_BELOW_MACS = 5e8


class Finish(str, Enum):
    """When a staged candidate that may reach the front is measured on the full set."""

    RACE = "race"  # on arrival: race it against the fully measured front, finish survivors at once
    END = "end"    # after the search: the search runs on first-stage values, then the screened front is raced


def is_final(record) -> bool:
    """Whether ``record`` carries a full-set measurement (no :class:`~qaev.runtime.store.Stage`)."""
    return record.stage is None


@dataclass(frozen=True, kw_only=True)
class Staging:
    """Where a candidate may stop early.

    Args:
        fractions: stage boundaries as shares of the evaluation set, increasing, < 1.
        min_samples: the first boundary has at least this many samples.
        z: margin in standard errors: a candidate stops only when even its metric drop
            minus ``z`` standard errors is dominated by a fully measured point.
        n_boot: bootstrap resamples for the standard error of a metric that is not a mean
            of per-item scores (a rank correlation); per-item means use their exact one.
        eps_drop: a candidate must beat the front's metric drop by more than this many
            points to be worth finishing (epsilon-dominance, Laumanns et al., "Combining
            convergence and diversity in evolutionary multiobjective optimization",
            Evolutionary Computation 2002); 0 = plain dominance.
        eps_rel: likewise for every other objective, relative (0.02 = 2 %).
        finish: :class:`Finish` (or its value): race on arrival, or screen during the
            search and finish the promising candidates at its end.
        max_finished: with ``Finish.END``, at most this many promising candidates are
            raced, evenly spread over them in order of first-stage drop (None: all).
        simulate: with ``Finish.END``, screen candidates on one float graph that stands in
            for every QDQ model (:mod:`qaev.quantize.simulate`: no graph to build and no
            session to open per candidate; the values of the QDQ model run in float)
            instead of each candidate's own QDQ model; finishing always measures the
            candidate's own model. None: where a first stage costs fewer than
            :data:`SIMULATE_BELOW_MACS` multiply-accumulates (a small model, where opening
            a session costs more than running it), as long as no objective needs the
            QDQ model itself (host latency).
    """

    fractions: tuple[float, ...] = (0.125, 0.25, 0.5)
    min_samples: int = 32
    z: float = 1.0
    n_boot: int = 50
    eps_drop: float = 0.0
    eps_rel: float = 0.02
    finish: Finish = Finish.RACE
    max_finished: int | None = None
    simulate: bool | None = None

    def __post_init__(self) -> None:
        fractions = tuple(float(f) for f in self.fractions)
        if not fractions or any(not 0 < f < 1 for f in fractions) or list(fractions) != sorted(set(fractions)):
            raise ValueError(f"staging fractions must be increasing shares in (0, 1), got {list(self.fractions)}")
        if self.max_finished is not None and self.max_finished < 0:
            raise ValueError(f"staging max_finished must be >= 0, got {self.max_finished}")
        if self.z < 0 or self.min_samples < 1 or self.n_boot < 2 or self.eps_drop < 0 or self.eps_rel < 0:
            raise ValueError("staging needs z >= 0, min_samples >= 1, n_boot >= 2 and eps_* >= 0")
        if self.simulate not in (None, True, False):
            raise ValueError(f"staging simulate must be true, false or null, got {self.simulate!r}")
        object.__setattr__(self, "fractions", fractions)
        try:
            object.__setattr__(self, "finish", Finish(self.finish))
        except ValueError:
            raise ValueError(f"staging finish must be one of {[f.value for f in Finish]}, "
                             f"got {self.finish!r}") from None

    def stops(self, n: int, batch_size: int) -> list[int]:
        """Item counts at which a candidate of an ``n``-item set is checked: whole batches
        only (so the finished run uses the plain evaluation's batches), each below ``n``."""
        out: list[int] = []
        for f in self.fractions:
            want = max(self.min_samples, f * n)
            stop = int(min(n, -(-want // batch_size) * batch_size))
            if stop < n and (not out or stop > out[-1]):
                out.append(stop)
        return out


def dominated(candidate: np.ndarray, front: np.ndarray, *, slack: np.ndarray | None = None) -> bool:
    """Whether any row of ``front`` is at least as good everywhere and better somewhere;
    with ``slack`` (per objective, >= 0, not all 0), whether any row is no worse than
    ``candidate + slack`` everywhere (epsilon-dominance)."""
    if front.size == 0:
        return False
    if slack is not None and np.any(slack > 0):
        return bool(np.any(np.all(front <= candidate + slack, axis=1)))
    better_eq = np.all(front <= candidate, axis=1)
    strictly = np.any(front < candidate, axis=1)
    return bool(np.any(better_eq & strictly))
