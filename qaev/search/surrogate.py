"""NSGA-II and NSGA-III with a predictor in the loop: many offspring made, few measured.

Each generation, once the drop model (:mod:`qaev.search.predictor`) has enough measured
records, the usual mating makes ``factor`` times the offspring a generation measures;
their exact objectives (size, hardware estimates) are computed, their drop predicted, and
the generation keeps, first, those whose optimistic vector (the drop ``kappa`` predictive
spreads below the prediction) is feasible and not dominated by the current population,
then the most uncertain. This is the pre-selection of surrogate-assisted evolutionary
algorithms (Jin, "Surrogate-assisted evolutionary computation: recent advances and future
challenges", Swarm and Evolutionary Computation 2011; Emmerich, Giannakoglou and Naujoks,
"Single- and multiobjective evolutionary optimization assisted by Gaussian random field
metamodels", IEEE TEVC 2006, for the lower confidence bound). Before the model has data,
the algorithms are plain NSGA-II / NSGA-III. When the problem carries a measured
sensitivity and bounds the drop, a quarter of each later generation's offspring are points
made along the greedy lowering path at sizes around the tolerance (:mod:`qaev.search.bracket`).

After the chosen offspring are measured, :attr:`~_Assisted.predictor_rank` holds the
Spearman correlation of the drops predicted for the new ones before measuring with the
measured drops.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.core.population import Population
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from qaev.errors import ConfigError
from qaev.evaluation.candidates import Candidate
from qaev.search.bracket import BRACKET_SHARE, bracket_rows, tolerance_of
from qaev.search.operators.sampling import lowering_path
from qaev.search.predictor import MIN_RECORDS, Features, fit_drop_model, spearman, training_records

__all__ = ["PredictorSettings", "Forecast", "AssistedNSGA2", "AssistedNSGA3", "unpredictable", "exact_rows"]


@dataclass(frozen=True, kw_only=True)
class PredictorSettings:
    """How the predictor chooses offspring.

    Attributes:
        factor: offspring made per offspring measured.
        kappa: predictive spreads subtracted from the predicted drop (optimism).
        min_records: measured records before the model is used.
    """

    factor: int = 8
    kappa: float = 1.0
    min_records: int = MIN_RECORDS

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 1:
            raise ConfigError(f"predictor factor: expected a positive integer, got {self.factor!r}")
        if not 0.0 <= float(self.kappa) < float("inf"):
            raise ConfigError(f"predictor kappa: expected a non-negative number, got {self.kappa!r}")
        if self.min_records < MIN_RECORDS:
            raise ConfigError(f"predictor min_records: at least {MIN_RECORDS}, got {self.min_records!r}")


@dataclass(frozen=True)
class Forecast:
    """One generation's predictions, made before its offspring were measured.

    Attributes:
        gen: the generation the offspring belong to.
        fitted_on: keys of the records the model was fitted on (those of the candidates the
            search had evaluated).
        keys: keys of the chosen offspring.
        drops: their predicted drops (metric points).
        new: whether each was new to the search when predicted (one it had evaluated before
            is not a new candidate).
    """

    gen: int
    fitted_on: frozenset
    keys: tuple
    drops: tuple
    new: tuple


def unpredictable(problem) -> str | None:
    """Why the predictor cannot serve ``problem`` (None: it can): it models the drop and
    needs every other objective and bound exact and free to compute."""
    if "acc_drop" not in problem.objectives:
        return "it models acc_drop, which is not an objective"
    bounded = {name for name, _ in problem.scoring.constraints.values()}
    for objective in problem.engine.objectives:
        wanted = objective.name in problem.objectives or objective.name in bounded
        if wanted and objective.name != "acc_drop" and (objective.needs_metric or objective.needs_model
                                                        or objective.quiet):
            return f"{objective.name} is measured per candidate, not computed"
    return None


def exact_rows(problem, configs) -> dict[str, np.ndarray]:
    """Objective name -> the values of ``configs`` for every objective and bound but the
    drop (each computed as the evaluation computes it, without building a model)."""
    bounded = {name for name, _ in problem.scoring.constraints.values()}
    chosen = [o for o in problem.engine.objectives if o.name != "acc_drop"
              and (o.name in problem.objectives or o.name in bounded)]
    out = {o.name: np.zeros(len(configs)) for o in chosen}
    for k, config in enumerate(configs):
        candidate = Candidate(config=config, proto=None, drop=None, engine=problem.engine)
        for objective in chosen:
            out[objective.name][k] = float(objective.value(candidate))
    return out


def _dominated_by(F: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Whether each row of ``F`` is weakly dominated by a row of ``ref`` (minimisation)."""
    if len(ref) == 0:
        return np.zeros(len(F), bool)
    le = np.all(ref[None, :, :] <= F[:, None, :], axis=2)
    return np.any(le, axis=1)


def _rows(problem, drops: np.ndarray, exact: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Objective and constraint rows with ``drops`` in the drop's place."""
    values = {**exact, "acc_drop": drops}
    F = np.stack([values[n] for n in problem.objectives], axis=1)
    G = np.stack([values[obj] - bound for obj, bound in problem.scoring.constraints.values()], axis=1) \
        if problem.scoring.constraints else np.zeros((len(drops), 0))
    return F, G


def _order(problem, pop, drop, optimistic, spread, exact) -> np.ndarray:
    """Offspring indices, the promising first (optimistic vector feasible and not dominated
    by a feasible member of ``pop``; by rank of the predicted vectors, then larger spread),
    then the rest by decreasing spread."""
    F_opt, G_opt = _rows(problem, optimistic, exact)
    feasible = np.all(G_opt <= 0, axis=1)
    members = np.asarray(pop.get("F"), float)
    cv = pop.get("CV")
    ref = members if cv is None else members[np.asarray(cv, float).reshape(-1) <= 0]
    promising = feasible & ~_dominated_by(F_opt, ref)
    rank = np.full(len(drop), len(drop), dtype=float)
    picked = np.flatnonzero(promising)
    if len(picked):
        F_mean, _ = _rows(problem, drop, exact)
        for level, front in enumerate(NonDominatedSorting().do(F_mean[picked])):
            rank[picked[front]] = level
    return np.lexsort((np.arange(len(drop)), -spread, rank, ~promising))


class _Assisted:
    """The predictor's infill and its rank correlation, mixed into a pymoo genetic algorithm
    (before it in the bases)."""

    def __init__(self, *, predictor: PredictorSettings | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.predictor = predictor or PredictorSettings()
        #: Spearman correlation of the last generation's predictions with its measurements.
        self.predictor_rank: float | None = None
        #: Every generation's :class:`Forecast` (None where the model was not used).
        self.forecasts: list[Forecast | None] = []
        self._features: Features | None = None
        self._rows: dict = {}  # record key -> feature row
        self._seen: dict = {}  # key -> genome of every candidate this search has evaluated, in order

    def _note(self, pop) -> None:
        for x in pop.get("X"):
            key = self.problem.space.key(x)
            self._seen.setdefault(key, np.asarray(x))

    def _fit(self):
        """The model of the records of the candidates this search has evaluated so far (a
        resumed search, replaying its path through the memo, sees what the first one saw)."""
        records = training_records(self.problem, self._seen)
        if len(records) < self.predictor.min_records:
            return None
        if self._features is None:
            self._features = Features.of(self.problem)
        return fit_drop_model(self._features, records, memo=self._rows)

    @cached_property
    def _path(self):
        """The greedy lowering path over the problem's measured sensitivity (None without one)."""
        measured = getattr(self.problem, "sensitivity", None)
        return None if measured is None else lowering_path(self.problem, np.asarray(measured, float))

    def _bracketed(self):
        """Points around the tolerance this generation measures (:mod:`qaev.search.bracket`),
        first: a generation a time budget cuts short measures them before the others."""
        k, path, tolerance = int(round(BRACKET_SHARE * self.n_offsprings)), self._path, tolerance_of(self.problem)
        if not k or path is None or tolerance is None:
            return Population.empty()
        drops = {r.key: r.objectives["acc_drop"] for r in training_records(self.problem, self._seen)}
        measured = [(x, drops[key]) for key, x in self._seen.items() if key in drops]
        rows = bracket_rows(path, measured, tolerance, k, skip=self._seen, key=self.problem.space.key)
        return self.repair.do(self.problem, Population.new(X=np.array(rows))) if rows else Population.empty()

    def _infill(self):
        self.predictor_rank = None
        extra = self._bracketed()
        n = self.n_offsprings - len(extra)
        model = self._fit()
        if model is None:
            self.forecasts.append(None)
            off = super()._infill()
            return extra if off is None else Population.merge(extra, off[:n])
        off = self.mating.do(self.problem, self.pop, self.predictor.factor * self.n_offsprings, algorithm=self,
                             random_state=self.random_state)
        if len(off) == 0:
            self.termination.force_termination = True
            return None
        configs = [self.problem.space.decode(x) for x in off.get("X")]
        keys = tuple(c.key() for c in configs)
        prediction = model.predict(configs)
        drop, optimistic, spread = prediction.drop, prediction.optimistic(self.predictor.kappa), prediction.spread
        known = {r.key: r.objectives["acc_drop"] for r in training_records(self.problem, model.keys & set(keys))}
        for k, key in enumerate(keys):  # one the search has measured costs nothing: its value is known
            if key in known:
                drop[k] = optimistic[k] = known[key]
                spread[k] = 0.0
        exact = exact_rows(self.problem, configs)
        taken = {self.problem.space.key(x) for x in extra.get("X")}
        chosen = [k for k in _order(self.problem, self.pop, drop, optimistic, spread, exact)
                  if self.problem.space.key(off[k].X) not in taken][:n]
        self.forecasts.append(Forecast(gen=self.n_iter, fitted_on=model.keys, keys=tuple(keys[k] for k in chosen),
                                       drops=tuple(float(drop[k]) for k in chosen),
                                       new=tuple(keys[k] not in self._seen for k in chosen)))
        return Population.merge(extra, off[chosen])

    def _initialize_advance(self, infills=None, **kwargs):
        if infills is not None:
            self._note(infills)
        return super()._initialize_advance(infills=infills, **kwargs)

    def _advance(self, infills=None, **kwargs):
        forecast = self.forecasts[-1] if self.forecasts else None
        if infills is not None:
            self._note(infills)
        if forecast is not None:
            self.predictor_rank = _rank(self.problem, forecast)
        return super()._advance(infills=infills, **kwargs)


def _rank(problem, forecast: Forecast) -> float | None:
    """Spearman correlation of a forecast's drops with the drops measured since, over its
    new candidates that were measured (failed ones and races stopped early left out)."""
    measured = {r.key: r.objectives["acc_drop"] for r in training_records(problem, forecast.keys)}
    pairs = [(p, measured[k]) for k, p, new in zip(forecast.keys, forecast.drops, forecast.new)
             if new and k in measured]
    return spearman(*zip(*pairs)) if pairs else None


class AssistedNSGA2(_Assisted, NSGA2):
    """NSGA-II (Deb et al., IEEE TEVC 2002) with a predictor choosing its offspring.

    Args:
        predictor: :class:`PredictorSettings` (default settings when None).
        **kwargs: :class:`pymoo.algorithms.moo.nsga2.NSGA2`'s options.
    """


class AssistedNSGA3(_Assisted, NSGA3):
    """NSGA-III (Deb and Jain, IEEE TEVC 2014) with a predictor choosing its offspring.

    Args:
        predictor: :class:`PredictorSettings` (default settings when None).
        **kwargs: :class:`pymoo.algorithms.moo.nsga3.NSGA3`'s options.
    """
