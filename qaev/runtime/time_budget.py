"""The time budget of a search run (``--time``): when to stop starting candidates so that the
run, which re-measures every front point on its exported model at the end, finishes on time.

The time kept for that end grows with the front: each point costs an export, a measurement
on the search and validation splits and its host-latency timing. The first of these is timed
on the first front point; the others come from the float model's measured evaluation. A run
that rebuilds its recommended point with block reconstruction (``--refine``) also keeps the
time that takes (:class:`~qaev.runtime.refining.RefineTime`), up to
:data:`~qaev.runtime.refining.REFINE_SHARE` of the budget. And the candidate that starts just
before the deadline finishes one evaluation after it: that evaluation is kept too (the
run's typical candidate once some are measured, :func:`typical_candidate_s`).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from qaev.runtime.refining import REFINE_ITERS, REFINE_SHARE, STEP_BATCH, RefineTime

__all__ = ["PhaseClock", "TimeBudget", "time_budget", "typical_candidate_s"]

#: Timed batch-1 runs of each exported file in the closing host-latency measurement
#: (:func:`qaev.search.remeasure.remeasure_front`: 3 rounds of 20).
_LATENCY_RUNS = 60
#: A quantized model runs a little slower than the float one it is estimated from.
_SLOWER = 1.3


@dataclass
class TimeBudget:
    """When a run with a time budget must stop starting candidates.

    Attributes:
        end: ``time.monotonic()`` by which the run should have finished.
        one_s: seconds of one evaluation on the search split (the float model's, x1.3).
        validation: validation samples per search-split sample.
        latency_s: seconds of one exported file's host-latency timing.
        floor_s: the least time kept for the end, whatever the front.
        export_s: seconds to export one front point (timed on the first front; until then
            taken as one evaluation).
        refine: what rebuilding the recommended point costs, for a run that does (else None).
        refine_s: seconds kept for it at the end.
    """

    end: float
    one_s: float
    validation: float
    latency_s: float
    floor_s: float
    export_s: float | None = None
    refine: RefineTime | None = None
    refine_s: float = 0.0

    def per_point_s(self) -> float:
        """Seconds to re-measure one front point at the end."""
        export = self.one_s if self.export_s is None else self.export_s
        return export + self.one_s * (1 + self.validation) + self.latency_s

    def reserve_s(self, points: int) -> float:
        """Seconds kept to re-measure a front of ``points`` points."""
        return max(self.floor_s, points * self.per_point_s())

    def deadline(self, points: int, *, candidate_s: float | None = None) -> float:
        """The ``time.monotonic()`` after which no candidate starts, for a front of ``points``,
        the last candidate's evaluation (``candidate_s``, else one evaluation) kept."""
        in_flight = self.one_s if candidate_s is None else candidate_s
        return self.end - self.reserve_s(points) - self.refine_s - in_flight

    def time_export(self, export) -> None:
        """Time ``export()`` (one front point's export) once."""
        if self.export_s is None:
            started = time.perf_counter()
            export()
            self.export_s = time.perf_counter() - started


def typical_candidate_s(records) -> float | None:
    """The median wall time of the measured candidates among ``records`` (None before any)."""
    seconds = [r.seconds for r in records if r.ok and r.seconds > 0]
    return statistics.median(seconds) if seconds else None


def time_budget(problem, minutes: float, start: float, *, workers: int = 1,
                refine: bool = False) -> tuple[TimeBudget, str]:
    """The budget of a run that started at ``start`` (``time.monotonic()``), from the float
    model's evaluation (the timed run that gave the evaluator its reference), and the line
    that says what it affords (``refine``: the run rebuilds its recommended point at the end)."""
    measured = problem.evaluator.float_measurement  # the reference's run, timed: not run twice
    n = max(1, len(problem.evaluator.data))
    one = max(measured.session_s + measured.inference_s, 1e-3) * _SLOWER
    validation = 0 if problem.validator is None else len(problem.validator.data) / n
    latency = measured.session_s + _LATENCY_RUNS * _SLOWER * measured.inference_s / n
    budget_s = minutes * 60.0
    floor = min(0.25 * budget_s, 12 * one * (1 + validation))
    budget = TimeBudget(end=start + budget_s, one_s=one, validation=validation, latency_s=latency, floor_s=floor)
    rebuild = ""
    if refine:
        budget.refine = RefineTime(per_sample_s=measured.inference_s / n, batch=STEP_BATCH,
                                   measure_s=one * (1 + 2 * (validation or 1)))
        budget.refine_s = min(REFINE_SHARE * budget_s, budget.refine.seconds(REFINE_ITERS, static=False))
        rebuild = (f"; {budget.refine_s / 60:.1f} min kept to rebuild the recommended point with block "
                   "reconstruction")
    left = budget.deadline(0) - time.monotonic()
    return budget, (f"time budget {minutes:g} min: one evaluation takes about {one:.2g} s (the float model on "
                    f"{n} samples: {one / _SLOWER:.2g} s, measured); about {max(0, int(left / one)) * workers} "
                    f"evaluations fit in the {left / 60:.1f} min left for the search (at least {floor / 60:.1f} min "
                    f"kept to re-measure the front at the end, about {budget.per_point_s():.2g} s a point: more "
                    f"as the front grows{rebuild})")


class PhaseClock:
    """Where a run's wall time went: ``mark(name)`` closes the phase that began at the
    previous mark (or at ``start``, a ``time.monotonic()``)."""

    def __init__(self, start: float) -> None:
        self.start = self.last = start
        self.phases: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.phases[name] = self.phases.get(name, 0.0) + now - self.last
        self.last = now

    def text(self, budget_s: float | None = None) -> str:
        """E.g. ``time: setup 9 s, search 1080 s; 1101 s in all (budget 1200 s)``."""
        parts = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.phases.items())
        total = self.last - self.start
        return f"time: {parts}; {total:.0f} s in all" + ("" if budget_s is None else f" (budget {budget_s:.0f} s)")
