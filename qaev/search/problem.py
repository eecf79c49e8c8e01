"""``QuantizationProblem``: per-layer mixed precision as a pymoo Problem."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from functools import cached_property, partial
from typing import Mapping, Sequence

import numpy as np
from pymoo.core.problem import Problem

from qaev.evaluation import screening
from qaev.config import QuantConfig
from qaev.errors import QaevError
from qaev.evaluation.evaluator import Evaluator, Measurement
from qaev.search.objectives import CONSTRAINTS, OBJECTIVES, check_objectives, host_latency_ms, model_bytes, other_bytes
from qaev.runtime.prefetch import prepared_ahead, prefetch_depth
from qaev.quantize import Quantizer
from qaev.model.session import make_session, run_batches
from qaev.search.space import SearchSpace
from qaev.evaluation.staging import SCREEN, SIMULATED, SUBSET, Finish, Staging, dominated, is_final
from qaev.runtime.store import EvaluationStore, Record

__all__ = ["QuantizationProblem", "FAILED"]

#: Objective value given to a candidate whose evaluation failed (never on a front).
FAILED = 1e9


@dataclass(frozen=True)
class _Prepared:
    """A candidate ready to run: its resolved config, QDQ model and session (either may be
    None when no objective needs it), and the seconds that took; screened on the simulator,
    its session is the simulator's and ``feed`` the inputs standing for the candidate."""

    config: QuantConfig
    proto: object
    session: object
    extra: dict
    seconds: float
    feed: dict | None = None


class QuantizationProblem(Problem):
    """Choose, for every quantizable layer, weight bits, activations, granularity and
    symmetry (plus a global calibration method and scale rule), minimising the chosen
    objectives. Genes are integers (see :class:`~qaev.search.space.SearchSpace`); real-valued
    vectors from pymoo's default operators are rounded, so any pymoo algorithm runs.

    Args:
        quantizer: the engine of the float model, calibrated.
        evaluator: measures the metric on the evaluation split.
        space: what may be chosen (default: 2/4/8-bit weights, a8 or float activations).
        objectives: names from :data:`qaev.search.objectives.OBJECTIVES`.
        constraints: e.g. ``{"max_drop": 1.0}`` -> pymoo inequality constraints.
        hardware: a target table name, path or :class:`qaev.hardware.HardwareTable`
            (needed for ``est_latency_ms`` / ``est_energy_mj``).
        store: the evaluation memo (in memory by default).
        host_feed: the input of ``host_latency_ms`` (default: the first evaluation batch).
        staging: race each candidate over growing shares of the set and finish only
            those that can still reach the front (:class:`~qaev.evaluation.staging.Staging`); with
            ``finish=Finish.END`` the search sees first-stage values and :meth:`finish`
            measures the promising candidates fully afterwards.
        runner: a pymoo runner (``StarmapParallelization``, ``DaskParallelization``) to
            evaluate a generation's new candidates in parallel; needs ``recipe``.
        recipe: a :class:`qaev.runtime.parallel.Recipe` telling workers how to rebuild this problem.
        prefetch: evaluating in this process, build the next candidates and open their
            sessions on this many other threads while the current one runs
            (:mod:`qaev.runtime.prefetch`; same results). Default: the cores the evaluator's ORT
            threads leave free, at most 2; always 0 when ``host_latency_ms`` is measured
            (it needs a quiet machine).

    Example:
        >>> from pymoo.algorithms.moo.nsga2 import NSGA2
        >>> from pymoo.optimize import minimize
        >>> from qaev.problems import get_problem
        >>> problem = get_problem("digits")
        >>> res = minimize(problem, NSGA2(pop_size=8), ("n_gen", 2), seed=1)
        >>> res.F.shape[1]
        2
    """

    def __init__(self, quantizer: Quantizer, evaluator: Evaluator, *, space: SearchSpace | None = None,
                 objectives: Sequence[str] = ("acc_drop", "size_mb"), constraints: Mapping[str, float] | None = None,
                 hardware=None, store: EvaluationStore | None = None, host_feed: Mapping | None = None,
                 staging: Staging | None = None, runner=None, recipe=None, prefetch: int | None = None) -> None:
        from qaev.hardware import HardwareTable, load_table

        self.quantizer = quantizer
        self.evaluator = evaluator
        self.space = space or SearchSpace(layers=quantizer.layers)
        self.objectives = tuple(objectives)
        self.constraints = dict(constraints or {})
        self.table = hardware if isinstance(hardware, HardwareTable) or hardware is None else load_table(hardware)
        check_objectives(self.objectives, self.constraints, has_hardware=self.table is not None)
        self.store = store if store is not None else EvaluationStore()
        self.host_feed = host_feed
        self.staging = staging
        self.runner = runner
        self.recipe = recipe
        self.prefetch = prefetch_depth(evaluator.threads) if prefetch is None else max(0, int(prefetch))
        self.n_evaluated = 0
        #: ``[searchable layer, w_bits index]`` -> measured harm (larger = worse), or None.
        #: When set, the search's sampling seeds its informed share from the greedy
        #: lowering path over it (:class:`qaev.search.operators.QuantSampling`).
        self.sensitivity: np.ndarray | None = None
        #: screened key -> (first-stage outputs, items): reused by finishing and paired comparisons
        self.heads: dict[str, tuple[np.ndarray, int]] = {}
        self._other_bytes = other_bytes(quantizer.model.proto, quantizer.layers)
        super().__init__(n_var=self.space.n_var, n_obj=len(self.objectives), n_ieq_constr=len(self.constraints),
                         xl=np.zeros(self.space.n_var), xu=self.space.upper().astype(float), vtype=int)

    # -- evaluation -------------------------------------------------------------------
    def _evaluate(self, X, out, *args, **kwargs) -> None:
        records = self.evaluate_many([self.space.decode(x) for x in np.atleast_2d(X)])
        records = [self.as_searched(r) for r in records]
        out["F"] = np.array([self.objective_vector(r) for r in records], dtype=float)
        if self.constraints:
            out["G"] = np.array([self.constraint_vector(r) for r in records], dtype=float)

    @property
    def screening(self) -> bool:
        """Whether the search runs on first-stage values (``Finish.END`` staging)."""
        return self.staging is not None and self.staging.finish is Finish.END

    def as_searched(self, record: Record) -> Record:
        """The record as the search saw it: with screening, its first-stage drop, even
        after :meth:`finish` measured it fully (so a resumed search takes the same path)."""
        if not self.screening or "screen_drop" not in record.extra:
            return record
        return replace(record, objectives={**record.objectives, "acc_drop": record.extra["screen_drop"]})

    def objective_vector(self, record: Record) -> list[float]:
        """The record's values in objective order (failed candidates get :data:`FAILED`)."""
        return [FAILED if not record.ok or record.objectives.get(n) is None else float(record.objectives[n])
                for n in self.objectives]

    def constraint_vector(self, record: Record) -> list[float]:
        """pymoo ``G`` row: value - bound (<= 0 is feasible)."""
        return [(FAILED if not record.ok or record.objectives.get(CONSTRAINTS[c]) is None
                 else float(record.objectives[CONSTRAINTS[c]]) - bound) for c, bound in self.constraints.items()]

    def evaluate_config(self, config: QuantConfig) -> Record:
        """Evaluate ``config`` (memoised on its effective hash)."""
        return self.evaluate_many([config])[0]

    def evaluate_many(self, configs: Sequence[QuantConfig]) -> list[Record]:
        """Evaluate configs not in the store (through :attr:`runner` when set), persist
        each result as it arrives, and return one record per config."""
        keys = [c.key() for c in configs]
        todo: dict[str, QuantConfig] = {}
        for key, config in zip(keys, configs):
            if key not in self.store and key not in todo:
                todo[key] = config
            elif key in self.store:
                self.store.hits += 1
        if todo and self.screening:  # decided here, before any candidate (a model it cannot run fails now)
            self.simulator  # noqa: B018
        if self.runner is None:  # one at a time: each candidate races against the latest front
            prepare = partial(self._prepare, screen=self.screening)
            for config, prepared in prepared_ahead(list(todo.values()), prepare, depth=self.effective_prefetch):
                front = self.full_front_matrix() if self._racing() else None
                self._keep(self.compute(config, front=front, prepared=prepared))
        elif todo:
            from qaev.runtime.parallel import RemoteEvaluation

            front = self.full_front_matrix() if self._racing() else None
            payloads = [{"config": c.to_dict(), "front": None if front is None else front.tolist()}
                        for c in todo.values()]
            for record in self.runner(RemoteEvaluation(self.recipe), payloads):
                self._keep(Record(**record))
        return [self.store.peek(k) for k in keys]

    @property
    def effective_prefetch(self) -> int:
        """Candidates prepared ahead when evaluating in this process: :attr:`prefetch`, or 0
        when host latency is measured (it needs a quiet machine)."""
        return 0 if self._needs("host_latency_ms") else self.prefetch

    def _racing(self) -> bool:
        return self.staging is not None and not self.screening

    def _keep(self, record: Record) -> None:
        self.store.put(record)
        self.n_evaluated += 1

    def full_front_matrix(self) -> np.ndarray:
        """Objective rows of the fully measured, successful, non-dominated records."""
        from qaev.search.front import non_dominated

        rows = [self.objective_vector(r) for r in self.store.records() if r.ok and is_final(r)]
        if not rows:
            return np.zeros((0, self.n_obj))
        F = np.array(rows)
        return F[non_dominated(F)]

    def staging_slack(self, row: np.ndarray) -> np.ndarray:
        """Per-objective epsilon of staging's dominance checks at ``row``."""
        return np.array([self.staging.eps_drop if n == "acc_drop" else self.staging.eps_rel * abs(v)
                         for n, v in zip(self.objectives, row)])

    def compute(self, config: QuantConfig, *, front: np.ndarray | None = None,
                head: tuple[np.ndarray, int] | None = None, prepared=None) -> Record:
        """Evaluate ``config`` now (no memo). Failures become a record with the reason.

        Args:
            config: the candidate.
            front: fully measured front rows; with :attr:`staging`, a candidate whose
                measurement at a stage boundary is dominated by them even with the margin
                is not finished (its record says ``stage: subset``). Screening (no
                ``front``, ``Finish.END``) measures the first stage only (``stage: screen``).
            head: with ``front``, the outputs of the first items already run for this
                candidate (by its screen) and how many items they cover.
            prepared: a future of :meth:`_prepare` for ``config`` started earlier (see
                :mod:`qaev.runtime.prefetch`); None prepares it now.
        """
        key = config.key()
        start = time.perf_counter()
        before = 0.0
        try:
            ready = prepared.result() if prepared is not None else self._prepare(config, screen=self.screening and front is None)
            before = ready.seconds if prepared is not None else 0.0  # its own time, spent on the other thread
            values, metric, extra = self._measure(ready, front=front, key=key, head=head)
            return Record(key=key, objectives=values, metric=metric, config=ready.config.to_dict(),
                          seconds=before + time.perf_counter() - start, extra=extra)
        except QaevError as exc:
            error = str(exc)
        except Exception as exc:  # a runtime failure marks the candidate, not the run
            error = f"{type(exc).__name__}: {exc}"
        return Record(key=key, objectives={}, metric=None, config=config.to_dict(),
                      seconds=before + time.perf_counter() - start, error=error)

    def _needs(self, name: str) -> bool:
        return name in self.objectives or any(CONSTRAINTS[c] == name for c in self.constraints)

    @cached_property
    def simulator(self):
        """The graph screening runs candidates on instead of their own QDQ models
        (:class:`~qaev.quantize.simulate.Simulator`), or None (see ``Staging.simulate``)."""
        return screening.simulator_for(self)

    def _prepare(self, config: QuantConfig, *, screen: bool = False) -> _Prepared:
        """Resolve ``config``, build its QDQ model and open its session (what the
        objectives need; nothing here depends on a measurement); to be ``screen``-ed on the
        :attr:`simulator`, only its inputs there."""
        begin = time.perf_counter()
        resolved = self.quantizer.resolve(config)
        extra: dict = {}
        simulator = self.simulator if screen else None
        if simulator is not None and simulator.covers(resolved):
            start = time.perf_counter()
            feed = simulator.feed(resolved)
            extra["feed_s"] = time.perf_counter() - start
            return _Prepared(config=resolved, proto=None, session=simulator.session, extra=extra,
                             seconds=time.perf_counter() - begin, feed=feed)
        proto = session = None
        if self._needs("acc_drop") or self._needs("host_latency_ms"):
            start = time.perf_counter()
            proto = self.quantizer.build(resolved, resolved=True)
            extra["build_s"] = time.perf_counter() - start
        if self._needs("acc_drop"):
            start = time.perf_counter()
            session = make_session(proto, threads=self.evaluator.threads)
            extra["session_s"] = time.perf_counter() - start
        return _Prepared(config=resolved, proto=proto, session=session, extra=extra,
                         seconds=time.perf_counter() - begin)

    def _measure(self, ready: _Prepared, *, front: np.ndarray | None = None, key: str | None = None,
                 head: tuple[np.ndarray, int] | None = None) -> tuple[dict, float | None, dict]:
        values = self._counted(ready.config)
        extra = dict(ready.extra)
        metric = None
        proto, session = ready.proto, ready.session
        if session is not None:
            if self.screening and front is None and self._screen(session, values, extra, key, feed=ready.feed):
                return values, None, extra
            if self.staging is not None and front is not None:
                measured = self._race(session, values, np.asarray(front, float), extra, head=head)
                if measured is None:
                    return values, None, extra
            else:
                measured = self.evaluator.measure(session)
            metric = measured.value
            values["acc_drop"] = self.evaluator.drop(measured.value)
            extra["session_s"] = extra.get("session_s", 0.0) + measured.session_s
            extra["inference_s"] = extra.get("inference_s", 0.0) + measured.inference_s
        if self._needs("host_latency_ms"):
            values["host_latency_ms"] = host_latency_ms(proto, self._host_feed())
        return values, metric, extra

    def _counted(self, config: QuantConfig) -> dict[str, float]:
        """The objectives that need no run: exact size and the hardware table's estimates."""
        values = {"size_mb": model_bytes(self.quantizer.layers, config, self._other_bytes) / 1e6}
        if self.table is not None:
            from qaev.quantize.sizes import estimate_cost

            report = estimate_cost(self.quantizer.layers, config, self.table)
            values["est_latency_ms"] = report.est_latency_ms
            values["est_energy_mj"] = report.est_energy_mj
        return values

    def _screen(self, session, values: dict, extra: dict, key: str | None, *, feed: dict | None = None) -> bool:
        """Measure the first stage only (on the simulator with ``feed``); False when the set
        has no stage boundary."""
        ev = self.evaluator
        stops = self.staging.stops(len(ev.data), ev.batch_size)
        if not stops:
            return False
        start = time.perf_counter()
        batches = itertools.islice(ev.data.batches(batch_size=ev.batch_size), stops[0] // ev.batch_size)
        if feed is not None:
            batches = ({**batch, **feed} for batch in batches)
            extra["screen_by"] = SIMULATED
        head = run_batches(session, batches)
        items = ev.item_drops(head)
        drop, stderr = ev.head_drop(head, n_boot=self.staging.n_boot, items=items)
        values["acc_drop"] = drop
        extra.update(stage=SCREEN, n=stops[0], screen_margin=self.staging.z * stderr, screen_drop=drop,
                     inference_s=time.perf_counter() - start)
        if items is not None:  # kept for paired comparisons in finish()
            extra["screen_items"] = [round(float(v), 6) for v in items]
        if key is not None:
            self.heads[key] = (head, stops[0])
            while len(self.heads) > screening.MAX_HEADS:  # bound memory: the oldest screens go first
                self.heads.pop(next(iter(self.heads)))
        return True

    def finish(self) -> int:
        """Race to the full set the screened candidates that can still be on the front
        (:func:`qaev.evaluation.screening.finish`). Returns how many were raced."""
        return screening.finish(self)

    def _race(self, session, values: dict, front: np.ndarray, extra: dict,
              head: tuple[np.ndarray, int] | None = None) -> Measurement | None:
        """Run the set batch by batch, checking at each stage boundary whether the candidate
        can still reach ``front``. Returns the full measurement (the same batches as a plain
        one), or None after setting ``values["acc_drop"]`` to the drop on the items run when
        the candidate was stopped. ``head``: outputs of the first items, already run."""
        ev = self.evaluator
        batches = ev.data.batches(batch_size=ev.batch_size)
        parts, done, inference = [], 0, 0.0
        if head is not None:
            parts, done = [head[0]], head[1]
            extra["head_n"] = done  # items reused from the screen, not run again
            for _ in itertools.islice(batches, done // ev.batch_size):  # skip them
                pass
        for stop in self.staging.stops(len(ev.data), ev.batch_size):
            if stop <= done:
                continue
            start = time.perf_counter()
            parts.append(run_batches(session, itertools.islice(batches, (stop - done) // ev.batch_size)))
            inference += time.perf_counter() - start
            done = stop
            drop, stderr = ev.head_drop(np.concatenate(parts), n_boot=self.staging.n_boot)
            margin = self.staging.z * stderr
            optimistic = np.array([drop - margin if n == "acc_drop" else (0.0 if n == "host_latency_ms" else values[n])
                                   for n in self.objectives])
            if dominated(optimistic, front, slack=self.staging_slack(optimistic)):
                values["acc_drop"] = drop
                extra.update(stage=SUBSET, n=done, margin=margin, inference_s=inference)
                return None
        start = time.perf_counter()
        parts.append(run_batches(session, batches))
        inference += time.perf_counter() - start
        out = np.concatenate(parts)
        return Measurement(value=ev.score(out), n=len(ev.data), session_s=0.0, inference_s=inference)

    def _host_feed(self) -> Mapping:
        if self.host_feed is None:
            self.host_feed = next(iter(self.evaluator.data.batches(batch_size=8)))
        return self.host_feed

    # -- reference values ---------------------------------------------------------------
    def float_objectives(self) -> dict[str, float]:
        """Objective values of the float model (the reference of hypervolume normalisation)."""
        values = {**self._counted(QuantConfig()), "acc_drop": 0.0}  # its metric is evaluator.float_value
        if self._needs("host_latency_ms"):
            values["host_latency_ms"] = host_latency_ms(self.quantizer.model.proto, self._host_feed())
        return {name: values[name] for name in self.objectives}

    def labels(self) -> dict[str, str]:
        """Objective name -> ``measured`` / ``exact`` / ``estimated``."""
        return {name: OBJECTIVES[name].kind for name in self.objectives}
