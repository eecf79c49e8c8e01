"""``QuantizationProblem``: per-layer mixed precision as a pymoo Problem.

The problem is the pymoo adapter and the evaluation memo; measuring a candidate is
:class:`~qaev.evaluation.candidates.CandidateEvaluator`'s job, and finishing a screening
search's candidates is :func:`qaev.evaluation.screening.finishing`'s.
"""
from __future__ import annotations

import time
from functools import partial
from typing import Mapping, Sequence

import numpy as np
from pymoo.core.problem import Problem

from qaev.config import QuantConfig
from qaev.errors import ConfigError
from qaev.evaluation.candidates import CandidateEvaluator
from qaev.evaluation.evaluator import Evaluator
from qaev.evaluation.scoring import FAILED, NEAR_Z, Scoring
from qaev.evaluation.screening import finishing
from qaev.evaluation.staging import Staging
from qaev.quantize import Quantizer
from qaev.runtime.prefetch import prefetch_depth, prepared_ahead
from qaev.runtime.store import EvaluationStore, Record
from qaev.search.objectives import check_objectives, get_objective, objectives
from qaev.search.objectives import constraints as bounded_objectives
from qaev.search.space import SearchSpace

__all__ = ["QuantizationProblem", "FAILED", "UNSTARTED"]

#: The error of a candidate the run's time budget left no time for (not kept in the memo).
UNSTARTED = "not evaluated: the time budget was spent"


def _unstarted(config: QuantConfig) -> Record:
    return Record(key=config.key(), objectives={}, metric=None, config=config.to_dict(), error=UNSTARTED)


def _carried(names: Sequence[str], bounds: Mapping[str, float], *, has_hardware: bool) -> list:
    """The objectives a record carries: the search's, those its constraints bound, and every
    other one that costs nothing (no run, no model; a hardware one only with a table)."""
    bounded = bounded_objectives()
    chosen = [get_objective(n) for n in names]
    for name in bounds:
        if bounded[name] not in chosen:
            chosen.append(bounded[name])
    for objective in objectives():
        free = not (objective.needs_metric or objective.needs_model or objective.quiet)
        if free and objective not in chosen and (has_hardware or not objective.needs_hardware):
            chosen.append(objective)
    return chosen


class QuantizationProblem(Problem):
    """Choose, for every quantizable layer, weight bits, activations, granularity and
    symmetry (plus a global calibration method and scale rule), minimising the chosen
    objectives. Genes are integers (see :class:`~qaev.search.space.SearchSpace`); real-valued
    vectors from pymoo's default operators are rounded, so any pymoo algorithm runs.

    Args:
        quantizer: the engine of the float model, calibrated.
        evaluator: measures the metric on the evaluation split.
        space: what may be chosen (default: 2/4/8-bit weights, a8 or float activations).
        objectives: names from the objective registry (:mod:`qaev.search.objectives`).
        constraints: e.g. ``{"max_drop": 1.0}`` -> pymoo inequality constraints.
        hardware: a target table name, path or :class:`qaev.hardware.HardwareTable`
            (needed for ``est_latency_ms`` / ``est_energy_mj``).
        store: the evaluation memo (in memory by default).
        host_feed: the input of ``host_latency_ms`` (default: the first evaluation batch).
        staging: race each candidate over growing shares of the set and finish only
            those that can still reach the front (:class:`~qaev.evaluation.staging.Staging`);
            with ``finish=Finish.END`` the search sees first-stage values and :meth:`finish`
            measures the promising candidates fully afterwards.
        runner: a pymoo runner (``StarmapParallelization``, ``DaskParallelization``) to
            evaluate a generation's new candidates in parallel; needs ``remote``.
        remote: the picklable callable the runner maps over ``{"config", "front"}`` payloads
            (:class:`qaev.runtime.parallel.RemoteEvaluation`: workers rebuild the problem).
        prefetch: evaluating in this process, build the next candidates and open their
            sessions on this many other threads while the current one runs
            (:mod:`qaev.runtime.prefetch`; same results). Default: the cores the evaluator's
            ORT threads leave free, at most 2; always 0 when host latency is measured.
        near: the front also keeps the records it beats by less than this many standard
            errors of their drop (:attr:`~qaev.evaluation.scoring.Scoring.near`; 0: the
            non-dominated records alone).

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
                 staging: Staging | None = None, runner=None, remote=None, prefetch: int | None = None,
                 near: float = NEAR_Z) -> None:
        from qaev.hardware import HardwareTable, load_table

        self.space = space or SearchSpace(layers=quantizer.layers)
        self.constraints = dict(constraints or {})
        self.validator = None  # an Evaluator of the validation split, where the run has one (search.build)
        self.table = hardware if isinstance(hardware, HardwareTable) or hardware is None else load_table(hardware)
        check_objectives(objectives, self.constraints, has_hardware=self.table is not None)
        bounded = bounded_objectives()
        self.scoring = Scoring(tuple(objectives), {c: (bounded[c].name, b) for c, b in self.constraints.items()},
                               staging, near)
        carried = _carried(objectives, self.constraints, has_hardware=self.table is not None)
        self.engine = CandidateEvaluator(quantizer, evaluator, objectives=carried, scoring=self.scoring,
                                         table=self.table, host_feed=host_feed)
        self.store = store if store is not None else EvaluationStore()
        self.runner = runner
        self.remote = remote
        self.prefetch = prefetch_depth(evaluator.threads) if prefetch is None else max(0, int(prefetch))
        self.n_evaluated = 0
        #: ``time.monotonic()`` after which no new candidate is started (None: no limit);
        #: candidates not started get a record saying so, which is not kept in the memo.
        self.deadline: float | None = None
        #: ``[searchable layer, w_bits index]`` -> measured harm (larger = worse), or None.
        #: When set, the search's sampling seeds its informed share from the greedy
        #: lowering path over it (:class:`qaev.search.operators.QuantSampling`).
        self.sensitivity: np.ndarray | None = None
        #: Called after each candidate measured in this process as ``(done, total, seconds)``:
        #: candidates done of this batch (a generation), and that candidate's seconds.
        self.on_candidate = None
        super().__init__(n_var=self.space.n_var, n_obj=len(objectives), n_ieq_constr=len(self.constraints),
                         xl=np.zeros(self.space.n_var), xu=self.space.upper().astype(float), vtype=int)

    # -- what the problem is made of ----------------------------------------------------
    @property
    def quantizer(self) -> Quantizer:
        """The engine of the float model."""
        return self.engine.quantizer

    @property
    def evaluator(self) -> Evaluator:
        """Measures the metric on the evaluation split."""
        return self.engine.evaluator

    @property
    def objectives(self) -> tuple[str, ...]:
        """Objective names, in column order."""
        return self.scoring.objectives

    @property
    def staging(self) -> Staging | None:
        """The run's staging, or None."""
        return self.scoring.staging

    @property
    def screening(self) -> bool:
        """Whether the search runs on first-stage values (``Finish.END`` staging)."""
        return self.scoring.screening

    @property
    def simulator(self):
        """The graph screening runs on, or None (:func:`qaev.evaluation.screening.simulator_for`)."""
        return self.engine.simulator

    @property
    def heads(self) -> dict:
        """Screened key -> (first-stage outputs, items)."""
        return self.engine.heads

    # -- pymoo ----------------------------------------------------------------------------
    def _evaluate(self, X, out, *args, **kwargs) -> None:
        records = self.evaluate_many([self.space.decode(x) for x in np.atleast_2d(X)])
        records = [self.scoring.as_searched(r) for r in records]
        out["F"] = np.array([self.scoring.objective_vector(r) for r in records], dtype=float)
        if self.constraints:
            out["G"] = np.array([self.scoring.constraint_vector(r) for r in records], dtype=float)

    def as_searched(self, record: Record) -> Record:
        """The record as the search saw it (:meth:`Scoring.as_searched`)."""
        return self.scoring.as_searched(record)

    def objective_vector(self, record: Record) -> list[float]:
        """The record's values in objective order (failed candidates get :data:`FAILED`)."""
        return self.scoring.objective_vector(record)

    def constraint_vector(self, record: Record) -> list[float]:
        """pymoo ``G`` row: value - bound (<= 0 is feasible)."""
        return self.scoring.constraint_vector(record)

    # -- evaluation through the memo ------------------------------------------------------
    def evaluate_config(self, config: QuantConfig) -> Record:
        """Evaluate ``config`` (memoised on its effective hash)."""
        return self.evaluate_many([config])[0]

    def evaluate_many(self, configs: Sequence[QuantConfig]) -> list[Record]:
        """Evaluate configs not in the store (through :attr:`runner` when set), persist
        each result as it arrives, and return one record per config."""
        keys = [c.key() for c in configs]
        todo: dict[str, QuantConfig] = {}
        for key, config in zip(keys, configs):
            if not self._known(key) and key not in todo:
                todo[key] = config
            elif key not in todo:
                self.store.hits += 1
        if todo and self.screening:  # decided here, before any candidate (a model it cannot run fails now)
            self.simulator  # noqa: B018
        if self.out_of_time():
            skipped = {key: _unstarted(config) for key, config in todo.items()}
        elif self.runner is None:
            skipped = self._evaluate_here(todo)
        else:
            skipped = self._evaluate_remote(todo)
        return [self.store.peek(k) or skipped[k] for k in keys]

    def _evaluate_here(self, todo: Mapping[str, QuantConfig]) -> dict[str, Record]:
        """One at a time, each racing against the latest front; the candidates the deadline
        leaves no time for are returned unstarted."""
        skipped = {}
        prepare = partial(self.engine.prepare, screen=self.screening)
        started = time.monotonic()
        for done, (config, prepared) in enumerate(prepared_ahead(list(todo.values()), prepare,
                                                                 depth=self.effective_prefetch), 1):
            if self.out_of_time():
                skipped[config.key()] = _unstarted(config)
                continue
            self._keep(self.compute(config, front=self._race_front(), prepared=prepared))
            if self.on_candidate is not None:
                now = time.monotonic()
                self.on_candidate(done, len(todo), now - started)
                started = now
        return skipped

    def _evaluate_remote(self, todo: Mapping[str, QuantConfig]) -> dict[str, Record]:
        if not todo:
            return {}
        if self.remote is None:
            raise ValueError("parallel evaluation needs the problem's remote evaluation (see qaev.runtime.parallel)")
        front = self._race_front()
        payloads = [{"config": c.to_dict(), "front": None if front is None else front.tolist()} for c in todo.values()]
        started = time.monotonic()
        for done, record in enumerate(self.runner(self.remote, payloads), 1):
            self._keep(Record.from_dict(record))
            if self.on_candidate is not None:
                now = time.monotonic()
                self.on_candidate(done, len(payloads), now - started)
                started = now
        return {}

    def out_of_time(self) -> bool:
        """Whether the run's :attr:`deadline` has passed (never before one candidate has
        been measured: a run always has something to show)."""
        return (self.deadline is not None and time.monotonic() > self.deadline
                and any(record.ok for record in self.store.records()))

    def _known(self, key: str) -> bool:
        """Whether the store answers ``key``: a record carrying every objective the search
        needs, or a failure, except one that timed out under a shorter limit than this
        run's (it is evaluated again)."""
        record = self.store.peek(key)
        if record is None:
            return False
        if record.limit_s is not None:
            limit = getattr(self.runner, "timeout", None)
            return limit is not None and limit <= record.limit_s
        needed = {*self.objectives, *(name for name, _ in self.scoring.constraints.values())}
        return not record.ok or needed <= set(record.objectives)

    def compute(self, config: QuantConfig, *, front: np.ndarray | None = None,
                head: tuple[np.ndarray, int] | None = None, prepared=None) -> Record:
        """Evaluate ``config`` now, no memo (:meth:`CandidateEvaluator.compute`; a screening
        search screens it unless a ``front`` to race against is given)."""
        return self.engine.compute(config, front=front, head=head, prepared=prepared,
                                   screen=self.screening and front is None)

    @property
    def effective_prefetch(self) -> int:
        """Candidates prepared ahead when evaluating in this process: :attr:`prefetch`, or 0
        when host latency is measured (it needs a quiet machine)."""
        return 0 if self.engine.needs("quiet") else self.prefetch

    def _race_front(self) -> np.ndarray | None:
        racing = self.staging is not None and not self.screening
        return self.full_front_matrix() if racing else None

    def _keep(self, record: Record) -> None:
        self.store.put(record)
        self.n_evaluated += 1

    def full_front_matrix(self) -> np.ndarray:
        """Objective rows of the fully measured, successful, non-dominated records."""
        return self.scoring.front_matrix(self.store.records())

    def finish(self) -> int:
        """Race to the full set the screened candidates that can still be on the front
        (:func:`qaev.evaluation.screening.finishing`). Returns how many were raced."""
        count = 0
        for record in finishing(self.engine, self.store, depth=self.effective_prefetch):
            self._keep(record)
            count += 1
        return count

    def decode(self, x) -> QuantConfig:
        """The config a pymoo solution vector stands for, e.g. a row of ``res.X`` (real genes
        are rounded and clipped as the search does): the config the search measured, so
        :meth:`evaluate_config` answers from the memo; :func:`qaev.export_model` takes it as
        it is, and ``problem.quantizer.resolve(config)`` adds the calibrated ranges a
        self-contained file (:func:`qaev.save_config`) records.

        Raises:
            ConfigError: ``x`` is not one vector of ``n_var`` genes.

        Example:
            >>> from qaev.problems import get_problem
            >>> from qaev.search import minimize
            >>> problem = get_problem("digits", eval=64)
            >>> res = minimize(problem, pop_size=6, n_gen=1, seed=1).pymoo_result
            >>> config = problem.decode(np.atleast_2d(res.X)[0])
            >>> record = problem.evaluate_config(config)  # the search measured it: from the memo
            >>> bool(np.allclose(problem.objective_vector(record), np.atleast_2d(res.F)[0]))
            True
        """
        x = np.asarray(x, dtype=float)
        if x.shape != (self.n_var,):
            raise ConfigError(f"decode: expected one solution vector of {self.n_var} genes, got shape {x.shape}")
        return self.space.decode(x)

    # -- reference values ---------------------------------------------------------------
    def float_objectives(self) -> dict[str, float]:
        """Objective values of the float model (the reference of hypervolume normalisation)."""
        return self.engine.float_objectives()

    def labels(self) -> dict[str, str]:
        """Objective name -> ``measured`` / ``exact`` / ``estimated``."""
        return {name: get_objective(name).kind.value for name in self.objectives}
