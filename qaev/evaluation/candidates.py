"""Evaluating one candidate config: build its QDQ model, open its session, measure its metric
(plainly, staged or screened) and compute every objective from the registry.

:class:`CandidateEvaluator` is what a search (and every baseline) measures with; it keeps no
memo (the problem's store does) and reads no other candidate but the front it is given.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Mapping, Sequence

import numpy as np

from qaev.config import QuantConfig
from qaev.errors import QaevError
from qaev.evaluation import race
from qaev.evaluation.evaluator import Evaluator, Measurement
from qaev.evaluation.scoring import Scoring
from qaev.evaluation.staging import Staging, dominated
from qaev.model.session import make_session
from qaev.quantize import Quantizer
from qaev.quantize.sizes import estimate_cost, model_bytes, other_bytes
from qaev.runtime.store import Record, Screen, Stage, StageKind, Timings

__all__ = ["Candidate", "CandidateEvaluator", "Prepared", "MAX_HEADS"]

#: First-stage outputs kept in memory (for finishing and paired comparisons); beyond it the
#: oldest are dropped, and such a candidate's finish runs its first stage again.
MAX_HEADS = 500


@dataclass(frozen=True)
class Prepared:
    """A candidate ready to run: its resolved config, QDQ model and session (either None
    when no objective needs it); screened on the simulator, its session is the simulator's
    and ``feed`` the inputs standing for the candidate."""

    config: QuantConfig
    proto: object
    session: object
    timings: Timings
    seconds: float
    feed: dict | None = None


@dataclass
class Candidate:
    """What an objective's value is computed from."""

    config: QuantConfig
    proto: object
    drop: float | None
    engine: "CandidateEvaluator" = field(repr=False)

    def model_bytes(self) -> int:
        """Exact weight bytes of the config (every other initializer included)."""
        return model_bytes(self.engine.quantizer.layers, self.config, self.engine.other_bytes)

    def cost(self):
        """The hardware table's :class:`~qaev.hardware.cost.CostReport` (estimates)."""
        if "_cost" not in self.__dict__:
            self._cost = estimate_cost(self.engine.quantizer.layers, self.config, self.engine.table)
        return self._cost

    def host_feed(self) -> Mapping:
        """The input host latency is measured on."""
        return self.engine.host_feed()

    def deployed(self):
        """The model whose speed is the shipped one: the exported file where it runs
        differently from the evaluation graph (layers written as ``MatMulNBits``), else the
        evaluation graph."""
        from qaev.quantize.export import export_model, exports_nbits

        if exports_nbits(self.engine.quantizer.layers, self.config):
            return export_model(self.engine.quantizer, self.config)
        return self.proto

    @property
    def ort_level(self) -> str:
        """The run's ONNX Runtime optimisation level."""
        return self.engine.evaluator.ort_level


class CandidateEvaluator:
    """Measures candidates of one float model.

    Args:
        quantizer: the engine of the float model, calibrated.
        evaluator: measures the metric on the evaluation split.
        objectives: every :class:`~qaev.search.objectives.base.Objective` a record carries:
            the search's, those its constraints bound, and any others that cost nothing.
        scoring: how records become rows (the search's objectives, constraints, staging).
        table: the hardware table of estimated objectives, or None.
        host_feed: the input of host latency (default: the first evaluation batch of 8).
    """

    def __init__(self, quantizer: Quantizer, evaluator: Evaluator, *, objectives: Sequence, scoring: Scoring,
                 table=None, host_feed: Mapping | None = None) -> None:
        self.quantizer = quantizer
        self.evaluator = evaluator
        self.objectives = tuple(objectives)
        self.scoring = scoring
        self.table = table
        self._host_feed = host_feed
        self.other_bytes = other_bytes(quantizer.model.proto, quantizer.layers)
        #: screened key -> (first-stage outputs, items): reused by finishing and paired comparisons
        self.heads: dict[str, tuple[np.ndarray, int]] = {}

    @property
    def staging(self) -> Staging | None:
        """The run's staging, or None."""
        return self.scoring.staging

    def needs(self, what: str) -> bool:
        """Whether an objective a record carries needs ``what``: ``metric``, ``model``,
        ``hardware`` or ``quiet``."""
        return any(getattr(o, f"needs_{what}" if what != "quiet" else "quiet") for o in self.objectives)

    def host_feed(self) -> Mapping:
        """The input host latency is measured on."""
        if self._host_feed is None:
            self._host_feed = next(iter(self.evaluator.data.batches(batch_size=8)))
        return self._host_feed

    @cached_property
    def simulator(self):
        """The graph screening runs candidates on instead of their own QDQ models, or None
        (:func:`qaev.evaluation.screening.simulator_for`)."""
        from qaev.evaluation.screening import simulator_for

        return simulator_for(self)

    def prepare(self, config: QuantConfig, *, screen: bool = False) -> Prepared:
        """Resolve ``config``, build its QDQ model and open its session (what the objectives
        need; nothing here depends on a measurement); to be ``screen``-ed on the
        :attr:`simulator`, only its inputs there."""
        begin = time.perf_counter()
        resolved = self.quantizer.resolve(config)
        simulator = self.simulator if screen else None
        if simulator is not None and simulator.covers(resolved):
            start = time.perf_counter()
            feed = simulator.feed(resolved)
            return Prepared(config=resolved, proto=None, session=simulator.session,
                            timings=Timings(feed_s=time.perf_counter() - start),
                            seconds=time.perf_counter() - begin, feed=feed)
        proto = session = None
        build_s = session_s = 0.0
        if self.needs("model"):
            start = time.perf_counter()
            proto = self.quantizer.build(resolved, resolved=True)
            build_s = time.perf_counter() - start
        if self.needs("metric"):
            start = time.perf_counter()
            session = make_session(proto, threads=self.evaluator.threads, level=self.evaluator.ort_level)
            session_s = time.perf_counter() - start
        return Prepared(config=resolved, proto=proto, session=session,
                        timings=Timings(build_s=build_s, session_s=session_s), seconds=time.perf_counter() - begin)

    def compute(self, config: QuantConfig, *, front: np.ndarray | None = None,
                head: tuple[np.ndarray, int] | None = None, prepared=None, screen: bool = False) -> Record:
        """Evaluate ``config`` now (no memo). Failures become a record with the reason.

        Args:
            config: the candidate.
            front: fully measured front rows; with staging, a candidate whose measurement
                at a stage boundary is dominated by them even with the margin is not
                finished (its record's stage is ``subset``).
            head: with ``front``, the outputs of the first items already run for this
                candidate (by its screen) and how many items they cover.
            prepared: a future of :meth:`prepare` started earlier; None prepares it now.
            screen: measure the first stage only (a screening search; stage ``screen``).
        """
        key = config.key()
        start = time.perf_counter()
        before = 0.0
        try:
            ready = prepared.result() if prepared is not None else self.prepare(config, screen=screen)
            before = ready.seconds if prepared is not None else 0.0  # its own time, spent on another thread
            record = self._measure(ready, key=key, front=front, head=head, screen=screen)
            bad = [n for n, v in record.objectives.items() if not math.isfinite(v)]
            if bad:
                raise QaevError(f"objective {bad[0]} is not a finite number ({record.objectives[bad[0]]})")
            return Record(**{**record.__dict__, "seconds": before + time.perf_counter() - start})
        except QaevError as exc:
            error = str(exc)
        except Exception as exc:  # a runtime failure marks the candidate, not the run
            error = f"{type(exc).__name__}: {exc}"
        return Record(key=key, objectives={}, metric=None, config=config.to_dict(),
                      seconds=before + time.perf_counter() - start, error=error)

    def _measure(self, ready: Prepared, *, key: str, front, head, screen: bool) -> Record:
        timings, stage, screened, reused = ready.timings, None, None, 0
        measured: Measurement | race.Stopped | None = None
        if ready.session is not None:
            if screen and self.staging is not None:
                measured = self._screen(ready, key)
                if isinstance(measured, race.Screened):
                    screened = Screen(drop=measured.drop, margin=measured.margin, simulated=ready.feed is not None,
                                      items=(None if measured.items is None
                                             else [round(float(v), 6) for v in measured.items]))
                    stage = Stage(kind=StageKind.SCREEN, n=measured.n)
            if measured is None and self.staging is not None and front is not None:
                measured = race.race(self.evaluator, self.staging, ready.session, head=head,
                                     stop=self._stopper(ready, np.asarray(front, float)))
                reused = head[1] if head is not None else 0
                if isinstance(measured, race.Stopped):
                    stage = Stage(kind=StageKind.SUBSET, n=measured.n, margin=measured.margin)
            elif measured is None:
                measured = self.evaluator.measure(ready.session, keep_outputs=True)
        drop, metric, se = None, None, None
        if isinstance(measured, Measurement):
            metric, drop = measured.value, self.evaluator.drop(measured.value)
            if measured.outputs is not None:
                se = self.evaluator.head_drop(measured.outputs)[1]
            timings = timings.plus(Timings(session_s=measured.session_s, inference_s=measured.inference_s))
        elif measured is not None:
            drop = measured.drop
            timings = timings.plus(Timings(inference_s=measured.seconds))
        candidate = Candidate(config=ready.config, proto=ready.proto, drop=drop, engine=self)
        values = {}
        for objective in self.objectives:
            if (objective.needs_metric and drop is None) or (objective.quiet and stage is not None):
                continue  # not measured, or a partial measurement: timing is left for the full one
            values[objective.name] = float(objective.value(candidate))
        return Record(key=key, objectives=values, metric=metric, config=ready.config.to_dict(), timings=timings,
                      stage=stage, screen=screened, reused=reused, drop_se=se)

    def _screen(self, ready: Prepared, key: str) -> race.Screened | None:
        screened = race.screen(self.evaluator, self.staging, ready.session, feed=ready.feed)
        if screened is not None:
            self.heads[key] = (screened.outputs, screened.n)
            while len(self.heads) > MAX_HEADS:  # bound memory: the oldest screens go first
                self.heads.pop(next(iter(self.heads)))
        return screened

    def _stopper(self, ready: Prepared, front: np.ndarray) -> Callable[[float, float], bool]:
        """Whether a candidate with ``drop`` (minus ``margin``) is dominated by ``front``
        (within the staging epsilons), its other objectives at their exact values and host
        latency at 0 (optimistic)."""
        candidate = Candidate(config=ready.config, proto=ready.proto, drop=0.0, engine=self)
        known = {o.name: (0.0 if o.quiet else float(o.value(candidate))) for o in self.objectives
                 if not o.needs_metric}

        def stop(drop: float, margin: float) -> bool:
            row = np.array([drop - margin if n == "acc_drop" else known[n] for n in self.scoring.objectives])
            return dominated(row, front, slack=self.scoring.slack(row))

        return stop

    def float_objectives(self) -> dict[str, float]:
        """Objective values of the float model (the reference of hypervolume normalisation)."""
        candidate = Candidate(config=QuantConfig(), proto=self.quantizer.model.proto, drop=0.0, engine=self)
        values = {o.name: float(o.value(candidate)) for o in self.objectives if o.name in self.scoring.objectives}
        return {name: values[name] for name in self.scoring.objectives}
