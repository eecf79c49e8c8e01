"""``minimize``: a thin wrapper over pymoo's, with qaev's operators and a history."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.core.callback import Callback
from pymoo.core.termination import Termination
from pymoo.optimize import minimize as pymoo_minimize
from pymoo.util.ref_dirs import get_reference_directions

from qaev.errors import ConfigError
from qaev.search.front import hypervolume
from qaev.search.operators import (
    EffectiveDuplicateElimination, HardwareRepair, LayerCrossover, NeighbourMutation, QuantSampling,
)
from qaev.search.problem import QuantizationProblem
from qaev.search.remeasure import measure_exported
from qaev.search.spec import PREDICTOR_DEFAULT
from qaev.search.surrogate import AssistedNSGA2, AssistedNSGA3, PredictorSettings, unpredictable
from qaev.runtime.store import Record

__all__ = ["minimize", "SearchResult", "make_algorithm", "Generation", "feasible_front", "measure_exported"]


@dataclass(frozen=True)
class Generation:
    """One line of the search history (``provisional``: the front of first-stage values of
    a screening search, before :meth:`QuantizationProblem.finish`; ``predictor_rank``: the
    Spearman correlation of the drops the predictor gave the generation's new candidates
    before they were measured with the measured drops, None where no predictor chose them
    (:mod:`qaev.search.surrogate`))."""

    gen: int
    evaluations: int
    cache_hits: int
    front_size: int
    hypervolume: float
    elapsed_s: float
    provisional: bool = False
    predictor_rank: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dict(self.__dict__)


@dataclass
class SearchResult:
    """What a search found.

    Attributes:
        front: non-dominated feasible records over *every* evaluated candidate.
        history: one :class:`Generation` per generation.
        float_objectives: the float model's objective values (normalisation reference).
        pymoo_result: the raw ``pymoo`` result.
    """

    front: list[Record]
    history: list[Generation]
    float_objectives: dict
    pymoo_result: object = field(repr=False, default=None)


def make_algorithm(problem: QuantizationProblem, *, name: str = "auto", pop_size: int = 20, informed: float = 0.3,
                   predictor: bool | PredictorSettings | None = None):
    """NSGA-II (up to 3 objectives) or NSGA-III (more) with qaev's operators.

    Args:
        problem: the problem searched.
        name: ``auto``, ``nsga2`` or ``nsga3``.
        pop_size: population size.
        informed: share of the first population :class:`QuantSampling` seeds from sensitivity.
        predictor: True (or :class:`~qaev.search.surrogate.PredictorSettings`): a drop model
            refitted on every measured candidate chooses each generation's offspring among
            many (:mod:`qaev.search.surrogate`); False: plain NSGA-II/III; None:
            :data:`qaev.search.spec.PREDICTOR_DEFAULT` where the problem allows it.

    Raises:
        ConfigError: an unknown name, or a predictor for a problem it cannot serve
            (:func:`~qaev.search.surrogate.unpredictable`).
    """
    if name == "auto":
        name = "nsga2" if problem.n_obj <= 3 else "nsga3"
    if name not in ("nsga2", "nsga3"):
        raise ConfigError(f"--algorithm: {name!r} is not one of nsga2, nsga3")
    common = dict(sampling=QuantSampling(informed=informed), crossover=LayerCrossover(), mutation=NeighbourMutation(),
                  repair=HardwareRepair(), eliminate_duplicates=EffectiveDuplicateElimination(problem.space))
    if predictor is None:
        predictor = PREDICTOR_DEFAULT and unpredictable(problem) is None
    if predictor is not False:
        why = unpredictable(problem)
        if why is not None:
            raise ConfigError(f"--predictor: cannot be used here: {why}")
        common["predictor"] = predictor if isinstance(predictor, PredictorSettings) else PredictorSettings()
    cls = {"nsga2": (NSGA2, AssistedNSGA2), "nsga3": (NSGA3, AssistedNSGA3)}[name][predictor is not False]
    if name == "nsga2":
        return cls(pop_size=pop_size, **common)
    partitions = {2: 12, 3: 6, 4: 4}.get(problem.n_obj, 3)
    ref_dirs = get_reference_directions("das-dennis", problem.n_obj, n_partitions=partitions)
    return cls(ref_dirs=ref_dirs, pop_size=max(pop_size, len(ref_dirs)), **common)


def feasible_front(problem: QuantizationProblem, *, provisional: bool = False) -> list[Record]:
    """Non-dominated, feasible, successful records among everything evaluated (fully
    measured ones only, unless ``provisional``: screened ones too, by first-stage values)."""
    return problem.scoring.front(list(problem.store.records()), provisional=provisional)


class _Budget(Termination):
    """Stop after ``n_gen`` generations or once the problem's deadline has passed."""

    def __init__(self, n_gen: int, problem) -> None:
        super().__init__()
        self.n_gen, self.problem = n_gen, problem

    def __deepcopy__(self, memo):  # pymoo copies its termination: share the problem, do not copy it
        return _Budget(self.n_gen, self.problem)

    def _update(self, algorithm) -> float:
        if getattr(self.problem, "out_of_time", lambda: False)():
            return 1.0
        return algorithm.n_gen / self.n_gen


class _History(Callback):
    def __init__(self, problem, scale, user: Callable | None) -> None:
        super().__init__()
        self.problem, self.scale, self.user = problem, scale, user
        self.rows: list[Generation] = []
        self.start = time.perf_counter()

    def notify(self, algorithm) -> None:
        self.record(algorithm.n_gen, provisional=self.problem.screening,
                    rank=getattr(algorithm, "predictor_rank", None))

    def record(self, gen: int, *, provisional: bool, rank: float | None = None) -> None:
        front = feasible_front(self.problem, provisional=provisional)
        F = np.array([self.problem.objective_vector(r) for r in front]).reshape(-1, self.problem.n_obj)
        row = Generation(gen=gen, evaluations=self.problem.n_evaluated, cache_hits=self.problem.store.hits,
                         front_size=len(front), hypervolume=hypervolume(F, self.scale),
                         elapsed_s=time.perf_counter() - self.start, provisional=provisional, predictor_rank=rank)
        self.rows.append(row)
        if self.user is not None:
            self.user(row, front)


def minimize(problem: QuantizationProblem, *, algorithm="auto", pop_size: int = 20, n_gen: int = 10, seed: int = 0,
             callback: Callable[[Generation, list[Record]], None] | None = None, verbose: bool = False,
             deadline: float | None = None, predictor: bool | None = None) -> SearchResult:
    """Search ``problem`` with pymoo and return the front over every evaluated candidate.

    Args:
        problem: the :class:`QuantizationProblem`.
        algorithm: ``"auto"``, ``"nsga2"``, ``"nsga3"`` or a pymoo algorithm instance.
        pop_size: population size.
        n_gen: generations (fewer when the problem's ``deadline`` passes first).
        seed: pymoo's seed (same seed, same front).
        callback: called after every generation with the history row and the current front
            (and, for a screening search, once more with the fully measured front).
        verbose: pymoo's own per-generation printout.
        deadline: ``time.monotonic()`` after which no candidate starts (once one has been
            measured); the warm start's candidates come first, so they are the ones measured.
        predictor: with an ``algorithm`` name, whether a drop model refitted on every
            measured candidate chooses each generation's offspring (:func:`make_algorithm`);
            None: the default where the problem allows it.

    Example:
        >>> from qaev.problems import get_problem
        >>> result = minimize(get_problem("digits"), pop_size=6, n_gen=2, seed=1)
        >>> len(result.front) >= 1 and result.history[-1].gen == 2
        True
    """
    algo = (make_algorithm(problem, name=algorithm, pop_size=pop_size, predictor=predictor)
            if isinstance(algorithm, str) else algorithm)
    floats = problem.float_objectives()
    scale = [problem.evaluator.float_value if n == "acc_drop" else floats[n] for n in problem.objectives]
    history = _History(problem, scale, callback)
    if deadline is not None:
        problem.deadline = deadline
    res = pymoo_minimize(problem, algo, _Budget(n_gen, problem), seed=seed, callback=history, verbose=verbose,
                         copy_algorithm=True)
    if problem.screening:  # the search ran on first-stage values: measure its promising candidates fully
        problem.finish()
        history.record(history.rows[-1].gen if history.rows else n_gen, provisional=False)
    return SearchResult(front=feasible_front(problem), history=history.rows, float_objectives=floats, pymoo_result=res)
