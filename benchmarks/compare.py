"""Head-to-head: qaev's search against every baseline at an equal budget of full evaluations.

    python benchmarks/compare.py --problem digits --budget 200 [--hardware arm_dot]
        [--objectives acc_drop,size_mb] [--seed 0] [--out DIR]
    python benchmarks/compare.py --from-json DIR/compare.json   # the tables of a finished run
    python benchmarks/compare.py --seeds A/compare.json B/compare.json ...   # several runs summarised

Every method searches on the problem's *search split* with its own evaluation store (so no
method profits from another's cache) and may spend at most ``--budget`` full evaluations
(a config built and measured on the search split). ``qaev_screened`` counts the same budget
in passes over the search split instead: it searches on the first stage of the split (a
sixth or so of it; every candidate on the same samples) and finishes the promising
candidates on the whole split, so it evaluates more candidates for the same number of
inferences (its wall time, printed beside, includes the extra builds). ``qaev_informed``
first probes every layer alone at every lower width on a few unlabelled samples of the
search split (the output noise), pays for those inferences from the budget (in passes of
the split, rounded up), and seeds half of its first population along the greedy lowering
path over that noise table. Every point a method reports (its
non-dominated set on the search split; all points of the fixed recipes) is then measured
again on a held-out *test split* no method saw, and every figure printed comes from the
test split: hypervolume with one reference point and normalisation for all methods
(:func:`qaev.search.front.hypervolume`, float model = 1, reference 1.1), and the best metric under
size and estimated-latency budgets, where the point is *chosen* on the search split.
Beside the hypervolume it prints its ceiling in this run (the hypervolume of the ideal point
of all methods' test points: with float = 1 and reference 1.1 the accuracy axis spans 110 %
of the float metric, so fronts that differ only within a point or two of float differ by
little, and this says how large a ratio was possible at all) and a within-tolerance
hypervolume (:func:`qaev.search.front.tolerance_hypervolume`: drop 0..``--tolerance`` points x
every cost 0..float, the mean saving over the tolerances), both recomputed by ``--from-json``.
Each test drop is stored with its paired standard error against float on the same samples
(``test_se``; printed beside the smallest points within each ``--within`` limit).

Points are chosen on one split and reported on another, as ``qaev search`` does: a share of
the search data (``--validation``, 0.25) is set apart as a validation split no method
searches on; every reported point is measured there too, and the smallest point within a
limit (and the best point under a budget) is chosen on it, then read on the test split.
``qaev_default`` takes its validation readings within its own time (its rebuild chooses on
them, as ``qaev search`` recommends); the others' are taken after their time, as their test
readings are. A timed run plans the baselines' evaluations from a real candidate's
evaluation (a uniform 4-bit config built and measured on the search split).
Writes ``DIR/compare.json`` (every figure, model sha256, versions, hardware table, seed,
which numbers are measured, exact or estimated) and ``DIR/fronts.png``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import platform
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

logging.basicConfig(level=logging.WARNING)  # before ORT's tools configure the root logger at INFO

from qaev.files import write_atomic  # noqa: E402
from qaev.baselines import (greedy_baseline, ilp_baseline, ort_baseline, random_baseline,  # noqa: E402
                            uniform_baseline)
from qaev.baselines.budget import charged_evaluations  # noqa: E402
from qaev.baselines.result import MethodResult, Point  # noqa: E402
from qaev.cli.options import bit_list, csv_list  # noqa: E402
from qaev.cli.search import SYMMETRY  # noqa: E402
from qaev.config import QuantConfig  # noqa: E402
from qaev.errors import ConfigError, QaevError  # noqa: E402
from qaev.evaluation.evaluator import Evaluator  # noqa: E402
from qaev.evaluation.scoring import NEAR_Z  # noqa: E402
from qaev.search.front import (REF_POINT, hypervolume, hypervolume_ceiling, near_front,  # noqa: E402
                               non_dominated, tolerance_hypervolume)
from qaev.search.objectives import get_objective  # noqa: E402
from qaev.search.problem import QuantizationProblem  # noqa: E402
from qaev.problems import problem_parts  # noqa: E402
from qaev.quantize import Quantizer  # noqa: E402
from qaev.sensitivity.proxy import noise_probe_count, output_noise_table  # noqa: E402
from qaev.search.optimize import make_algorithm, minimize  # noqa: E402
from qaev.search.defaults import default_space  # noqa: E402
from qaev.search.width_rows import weight_only_act  # noqa: E402
from qaev.search.space import SearchSpace  # noqa: E402
from qaev.evaluation.staging import Finish, Staging, is_final  # noqa: E402
from qaev.runtime.store import EvaluationStore  # noqa: E402
from qaev.runtime.search_run import default_tolerance  # noqa: E402

METHODS = ("qaev", "qaev_screened", "qaev_informed", "qaev_default", "uniform", "ort_tools", "greedy", "ilp",
           "random")
#: The methods of a ``--time`` comparison unless ``--methods`` says otherwise.
TIMED = ("qaev_default", "uniform", "ort_tools", "greedy", "ilp", "random")
FIXED = {"uniform", "ort_tools"}  # recipes: every point is reported
#: Batch of the search split's evaluator: a screen's first stage is whole batches.
SEARCH_BATCH = 32


@dataclass(frozen=True)
class Setup:
    """The shared pieces: calibrated quantizer, space, the splits' evaluators (``validation``:
    the split every method's reported points are chosen on, None to choose on ``search``)."""

    name: str
    parts: object
    quantizer: Quantizer
    space: SearchSpace
    search: Evaluator
    test: Evaluator
    objectives: tuple
    hardware: object
    validation: Evaluator | None = None

    def problem(self, *, staging: Staging | None = None, constraints: dict | None = None) -> QuantizationProblem:
        """A fresh problem on the search split (its own store, shared caches)."""
        return QuantizationProblem(self.quantizer, self.search, space=self.space, objectives=self.objectives,
                                   hardware=self.hardware, store=EvaluationStore(), staging=staging,
                                   constraints=constraints)


def build_setup(name: str, *, objectives, hardware, seed: int, calib=None, eval=None, space=None,
                validation: float = 0.0) -> Setup:
    """Build the problem's parts and split its evaluation data into search and test halves
    (seeded), unless the problem brings its own test split (``parts.test``). ``space``:
    :class:`SearchSpace` options shared by every method (default: the default space).
    ``validation``: the share of the search split set apart (seeded) as the validation
    split every method's points are chosen on, as ``qaev search --validation`` does (0: none)."""
    from qaev.hardware import load_table

    parts = problem_parts(name, calib=calib, eval=eval)
    test = getattr(parts, "test", None)
    if test is None:
        search_data, test_data = parts.eval.split(n_first=len(parts.eval) // 2, n_second=None, seed=seed)
    else:
        search_data, test_data = parts.eval, test
    validation_data = None
    if validation > 0:
        n_val = int(round(validation * len(search_data)))
        search_data, validation_data = search_data.split(n_first=len(search_data) - n_val, n_second=n_val, seed=seed)
    quantizer = Quantizer.calibrated(parts.model, parts.calib)
    space = dict(space or {})
    if "preset" in space:  # the preset's defaults for the model's family fill what is not given
        preset = space.pop("preset")
        space = default_space(quantizer.layers, preset=preset, given=space).options()
    return Setup(name=name, parts=parts, quantizer=quantizer,
                 space=SearchSpace(layers=quantizer.layers, **space),
                 search=Evaluator(parts.model, search_data, metric=parts.metric, batch_size=SEARCH_BATCH),
                 test=Evaluator(parts.model, test_data, metric=parts.metric), objectives=tuple(objectives),
                 hardware=load_table(hardware) if hardware else None,
                 validation=None if validation_data is None else Evaluator(parts.model, validation_data,
                                                                          metric=parts.metric))


def _population(evaluations: int, pop: int | None) -> tuple[int, int]:
    """NSGA-II's population (``pop``, default ~sqrt(2 evaluations) within 8..40) and
    generations for at most ``evaluations`` candidates."""
    pop = min(evaluations, pop or int(np.clip(int(np.sqrt(2 * evaluations)), 8, 40)))
    return pop, max(1, evaluations // pop)


def qaev_search(problem, *, budget: int, seed: int, pop: int | None = None, informed: float = 0.3) -> MethodResult:
    """qaev's NSGA-II with ``pop * generations <= budget`` (cache hits make it spend less);
    ``informed``: the share of the first population seeded from sensitivity."""
    pop, n_gen = _population(budget, pop)
    start = time.perf_counter()
    # without the predictor (qaev.search.surrogate), as the entries of RESULTS.md were measured
    algorithm = make_algorithm(problem, pop_size=pop, informed=informed, predictor=False)
    result = minimize(problem, algorithm=algorithm, n_gen=n_gen, seed=seed)
    points = tuple(_point(r, f"front {i}") for i, r in enumerate(result.front))
    return MethodResult(method="qaev", points=points, evaluations=problem.n_evaluated,
                        wall_s=time.perf_counter() - start, notes=(f"NSGA-II, pop {pop} x {n_gen} generations",))


def qaev_screened(setup: Setup, *, budget: int, seed: int, pop: int | None = None,
                  finish_share: float = 0.3) -> MethodResult:
    """qaev's NSGA-II on first-stage values (``Finish.END`` staging), its budget counted in
    passes over the search split: a screen costs its share of the split, a finished
    candidate the rest. ``1 - finish_share`` of the budget goes to screening, the rest to
    finishing the promising candidates (evenly spread when they are more)."""
    probe = Staging(finish=Finish.END)
    n_set = len(setup.search.data)
    stops = probe.stops(n_set, setup.search.batch_size)
    share = stops[0] / n_set if stops else 1.0
    n_screens = max(1, int(budget * (1 - finish_share) / share))
    pop, n_gen = _population(n_screens, pop)
    finishes = int(max(0.0, budget - pop * n_gen * share) / max(1e-9, 1 - share))
    problem = setup.problem(staging=replace(probe, max_finished=finishes))
    start = time.perf_counter()
    # without the predictor (qaev.search.surrogate), as the entries of RESULTS.md were measured
    result = minimize(problem, pop_size=pop, n_gen=n_gen, seed=seed, predictor=False)
    wall = time.perf_counter() - start
    records = [r for r in problem.store.records() if r.ok]
    items = sum(n_set if is_final(r) else r.stage.n for r in records)
    finished = sum(1 for r in records if is_final(r))
    points = tuple(_point(r, f"front {i}") for i, r in enumerate(result.front))
    return MethodResult(method="qaev_screened", points=points, evaluations=problem.n_evaluated, wall_s=wall,
                        passes=items / n_set,
                        notes=(f"NSGA-II on the first {stops[0] if stops else n_set} of {n_set} samples, pop {pop} x "
                               f"{n_gen} generations; {finished} finished (at most {finishes}); "
                               f"{items / n_set:.1f} passes of the split",))


def qaev_informed(setup: Setup, *, budget: int, seed: int, pop: int | None = None, samples: int = 32,
                  informed: float = 0.5) -> MethodResult:
    """qaev's NSGA-II seeded from measured output noise: every searchable layer is probed
    alone at every lower width (:func:`~qaev.sensitivity.proxy.output_noise_table`
    on the first ``samples`` of the search split, no labels), ``informed`` of the first
    population is spread along the greedy lowering path over that table, and the probes'
    inferences are charged to the budget in passes of the split, rounded up to whole
    evaluations; NSGA-II spends the rest."""
    problem = setup.problem()
    n_set, n_probes = len(setup.search.data), noise_probe_count(problem)
    probe_passes = n_probes * min(samples, n_set) / n_set
    left = budget - charged_evaluations(probe_passes)
    start = time.perf_counter()
    if left < 1:
        raise ConfigError(f"qaev_informed: a budget of {budget} evaluations cannot pay for "
                          f"{n_probes} probes of {samples} samples ({probe_passes:.1f} passes)")
    problem.sensitivity = output_noise_table(problem, samples=samples)
    probe_s = time.perf_counter() - start
    result = qaev_search(problem, budget=left, seed=seed, pop=pop, informed=informed)
    return replace(result, method="qaev_informed", evaluations=result.evaluations + budget - left,
                   wall_s=time.perf_counter() - start, passes=result.evaluations + probe_passes,
                   notes=(f"{n_probes} noise probes on {min(samples, n_set)} samples ({probe_passes:.1f} passes, "
                          f"{probe_s:.0f} s); {result.notes[0]}, {informed:.0%} of the first from the lowering path",))


def qaev_default(problem, *, seconds: float, seed: int, pop: int | None = None, samples: int = 32,
                 refine: bool = True) -> MethodResult:
    """What ``qaev search --time`` does: half of the first population along the greedy
    lowering path over per-layer output-noise probes (their time included), then the
    predictor-led NSGA-II (with its tolerance bracket when ``problem`` bounds the drop, as
    ``qaev search`` does by default) until ``seconds`` have passed since the start. Where the
    problem has a validation split (``problem.validator``), the search keeps the time to
    measure its front there, and does so (each point's ``extra["validation"]``). With
    ``refine`` (``qaev search``'s default where PyTorch is installed) the search also stops
    early enough to rebuild its choice, the point ``qaev search`` recommends, with block
    reconstruction in the time the run keeps for that, and reports the rebuilt point beside
    the front unless it measured worse where the choice was made (as ``qaev search`` ships it)."""
    from qaev.runtime.time_budget import PhaseClock, time_budget, typical_candidate_s

    start, began = time.perf_counter(), time.monotonic()
    clock = PhaseClock(began)
    budget, _ = time_budget(problem, seconds / 60.0, began, refine=refine)
    problem.sensitivity = output_noise_table(problem, samples=samples)
    clock.mark("probes")
    pop = pop or 20
    stop = budget.end - budget.refine_s

    def keep_time(row, front) -> None:  # the front's validation readings and the candidate in flight, kept
        in_flight = typical_candidate_s(problem.store.records()) or budget.one_s
        problem.deadline = stop - len(front) * budget.one_s * budget.validation - in_flight

    result = minimize(problem, algorithm=make_algorithm(problem, pop_size=pop, informed=0.5), n_gen=10_000,
                      seed=seed, deadline=stop - budget.one_s, callback=keep_time)
    clock.mark("search")
    points = tuple(_validated(problem, _point(r, f"front {i}")) for i, r in enumerate(result.front))
    clock.mark("validation readings")
    notes = (f"{noise_probe_count(problem)} noise probes ({clock.phases['probes']:.0f} s); NSGA-II, pop {pop} x "
             f"{result.history[-1].gen if result.history else 0} generations in {seconds / 60:g} min",)
    rebuilt = _rebuilt_choice(problem, points, budget, seed=seed) if refine else None
    if rebuilt is not None:
        point, note = rebuilt
        if point is not None:  # it ships in place of the point as searched (which stays listed, not reported)
            source = point.extra["rebuilt_from"]
            points = tuple(replace(p, extra={**p.extra, "replaced_by": point.label}) if p.label == source else p
                           for p in points) + (point,)
        notes += (note,)
        clock.mark("rebuild")
    notes += (clock.text(seconds) + f"; {budget.refine_s:.0f} s kept for the rebuild",)
    return MethodResult(method="qaev_default", points=points, evaluations=problem.n_evaluated,
                        wall_s=time.perf_counter() - start, notes=notes)


def _point(record, label: str) -> Point:
    """A front record as a point, with its drop's standard error on the search split (what
    the front's near points are judged by)."""
    return Point.from_record(record, label, **({} if record.drop_se is None else {"drop_se": record.drop_se}))


def _validated(problem, point: Point) -> Point:
    """``point`` with its validation-split reading in ``extra`` (as is without a validator)."""
    if problem.validator is None or not point.ok or point.config is None:
        return point
    measured = problem.validator.measure(problem.quantizer.build(QuantConfig.from_dict(point.config)),
                                         keep_outputs=True)
    reading = {"metric": measured.value, "acc_drop": problem.validator.drop(measured.value),
               "se": problem.validator.head_drop(measured.outputs)[1]}
    return replace(point, extra={**point.extra, "validation": reading})


def _rebuilt_choice(problem, points: tuple, budget, *, seed: int) -> tuple[Point | None, str] | None:
    """The point ``qaev search`` recommends (:func:`~qaev.runtime.rundir.recommend`: the
    smallest within the problem's tolerance, on the validation split where the points carry
    one, else on the search split), rebuilt with block reconstruction in the steps per block
    the time left allows (as ``qaev search --time`` rebuilds its recommended point), and a
    note on it; the point is None when the rebuild measured worse than the point as searched
    by over twice the paired standard error where the choice was made (it is not shipped).
    None when no point is within the tolerance, no time is left or the point cannot be
    rebuilt (no PyTorch)."""
    from qaev.config import BlockSettings
    from qaev.runtime.refining import REFINE_ITERS, refine_point

    candidates = [p for p in points if p.ok and p.config is not None]
    pick = _recommend([(p.objectives, p.extra.get("validation")) for p in candidates], list(problem.objectives),
                      problem.constraints.get("max_drop"))
    if pick is None:
        return None
    chosen = candidates[pick["id"]]
    config = QuantConfig.from_dict(chosen.config)
    evaluators = {"search": problem.evaluator}  # the search-split reading the reported front is drawn from
    if problem.validator is not None:
        evaluators["validation"] = problem.validator
    extra_s = 2 * budget.one_s if problem.validator is not None else 0.0  # the search split read too
    iters = budget.refine.iters_within(budget.end - time.monotonic() - extra_s, config, most=REFINE_ITERS)
    if not iters:
        return None
    block = BlockSettings(iters=iters, seed=seed, output_loss=problem.evaluator.metric.output_loss)
    try:
        refined = refine_point(problem.quantizer, config, evaluators, block=block)
    except QaevError as exc:  # no PyTorch, or nothing to rebuild: the front stands, as in qaev search
        logging.getLogger(__name__).warning("qaev_default: %s not rebuilt: %s", chosen.label, exc)
        return None
    split = refined.judged_on
    note = (f"{chosen.label} (chosen on the {pick['chosen_on']} split) rebuilt with block reconstruction "
            f"({iters} steps a block, {refined.seconds:.0f} s): {split}-split drop "
            f"{refined.before[split]['acc_drop']:.2f} -> {refined.after[split]['acc_drop']:.2f}")
    if refined.failed():
        return None, note + "; worse by over twice the standard error: not shipped"
    measured = refined.after["search"]
    extra = {"rebuilt_from": chosen.label, "iters": iters}
    if "validation" in refined.after:
        extra["validation"] = {k: refined.after["validation"][k] for k in ("metric", "acc_drop", "se")}
    point = Point(label=f"{chosen.label} rebuilt", objectives={**chosen.objectives, "acc_drop": measured["acc_drop"]},
                  metric=measured["metric"], config=refined.config.to_dict(), key=refined.config.key(), extra=extra)
    return point, note


def _recommend(entries: list[tuple[dict, dict | None]], objectives: list[str], tolerance: float | None) -> dict | None:
    """:func:`qaev.runtime.rundir.recommend` over ``(objectives on the search split, validation
    reading or None)`` pairs: its pick, ``id`` the pair's index, or None."""
    from qaev.runtime.rundir import recommend

    return recommend([{"id": i, "objectives": values, **({} if checked is None else {"validation": checked})}
                      for i, (values, checked) in enumerate(entries)], objectives, tolerance)


def per_evaluation_s(setup: Setup) -> float:
    """Seconds one full evaluation on the search split takes, measured on a real candidate:
    the space's uniform 4-bit weight-only config, built once untimed (the rounding caches
    filled, as every method but the first finds them), then built, opened and run on the
    search split, timed. (Until 2026-12-07 this was the float model's run x1.3, which
    overstated it by about a third: the baselines planned fewer evaluations than their
    time allowed and stopped after three quarters of it.)"""
    space = setup.space
    config = space.decode(space.encode_uniform(w_bits=4, act=weight_only_act(space)))
    setup.quantizer.build(config)
    started = time.perf_counter()
    setup.search.measure(setup.quantizer.build(config))
    return time.perf_counter() - started


def run_method(setup: Setup, method: str, *, budget: int, seed: int, pop: int | None,
               act: str = "a8", seconds: float | None = None, refine: bool = True) -> MethodResult:
    """One method on a fresh problem (``act``: the allocation baselines' activation
    setting). With ``seconds``, every method stops starting candidates after that much
    wall time (its probes included); ``budget`` is then the evaluations that time affords,
    which the baselines plan with."""
    if seconds is not None and method == "qaev_default":  # bounded by the default tolerance, as qaev search is
        problem = setup.problem(constraints={"max_drop": default_tolerance(setup.search.metric.name)})
        problem.validator = setup.validation  # chooses there, as qaev search does
        return qaev_default(problem, seconds=seconds, seed=seed, pop=pop, refine=refine)
    problem = setup.problem()
    if seconds is not None:
        problem.deadline = time.monotonic() + seconds
    cost = "size_mb" if "size_mb" in setup.objectives else next(
        (o for o in setup.objectives if o.startswith("est_")), "size_mb")
    if method == "qaev":
        return qaev_search(problem, budget=budget, seed=seed, pop=pop)
    if method == "qaev_screened":
        return qaev_screened(setup, budget=budget, seed=seed, pop=pop)
    if method == "qaev_informed":
        return qaev_informed(setup, budget=budget, seed=seed, pop=pop)
    if method == "uniform":
        return uniform_baseline(problem, budget=budget)
    if method == "ort_tools":
        return ort_baseline(problem, setup.parts.calib, budget=budget)
    if method == "greedy":
        return greedy_baseline(problem, budget=budget, cost=cost, act=act)
    if method == "ilp":
        return ilp_baseline(problem, budget=budget, cost=cost, act=act)
    return random_baseline(problem, budget=budget, seed=seed)


def _vector(objectives: dict, names) -> list[float]:
    return [float(objectives[n]) for n in names]


def reported(result: MethodResult, names) -> list[Point]:
    """The points a method hands its user: all of a recipe's, else the non-dominated set (a
    point another replaced, as qaev_default's rebuilt choice replaces it, is not handed over);
    qaev's methods also hand over the points their front keeps as near it (as ``qaev search``
    does: :meth:`qaev.evaluation.scoring.Scoring.front`), each marked ``extra["near"]``."""
    ok = [p for p in result.points if p.ok and all(p.objectives.get(n) is not None for n in names)
          and "replaced_by" not in p.extra]
    if result.method in FIXED or not ok:
        return ok
    F = np.array([_vector(p.objectives, names) for p in ok])
    strict = non_dominated(F)
    if not result.method.startswith("qaev") or "acc_drop" not in names:
        return [ok[i] for i in strict]
    slack = [NEAR_Z * p.extra["drop_se"] if p.extra.get("drop_se") is not None else 0.0 for p in ok]
    kept = near_front(F, slack, drop=list(names).index("acc_drop"))
    return [ok[i] if i in strict else replace(ok[i], extra={**ok[i].extra, "near": True}) for i in kept]


class TestSplit:
    """Re-measures points on the test split, or on ``evaluator``'s (memoised by config key).

    :meth:`measure_all` measures many points on ``workers`` threads at once (one ORT thread
    each; ORT releases the GIL while it runs), building each model in the calling thread, so
    at most ``workers + 1`` models are alive at a time; the values are the same as one by one.
    """

    def __init__(self, setup: Setup, *, workers: int = 1, evaluator: Evaluator | None = None) -> None:
        self.setup, self.memo, self.count, self.workers = setup, {}, 0, max(1, workers)
        self.evaluator = setup.test if evaluator is None else evaluator
        self.errors: dict[str, float] = {}  # key -> paired standard error of the test drop

    @staticmethod
    def _key(point: Point) -> str:
        return point.key or f"model:{hashlib.sha256(point.model).hexdigest()}"

    def _model(self, point: Point):
        return (self.setup.quantizer.build(QuantConfig.from_dict(point.config)) if point.config is not None
                else point.model)

    def measure(self, point: Point, key: str | None = None) -> float:
        """The test metric of ``point`` (``key``: its memo key, when the caller has it)."""
        key = key or self._key(point)
        if key not in self.memo:
            self._store(key, self._measure(self._model(point)))
        return self.memo[key]

    def error(self, point: Point) -> float | None:
        """The paired standard error of ``point``'s test drop (after :meth:`measure`)."""
        return self.errors.get(self._key(point))

    def _measure(self, model):
        return self.evaluator.measure(model, keep_outputs=True)

    def _store(self, key: str, measured) -> None:
        self.memo[key] = measured.value
        self.errors[key] = self.evaluator.head_drop(measured.outputs)[1]
        self.count += 1

    def measure_all(self, points: list[Point]) -> None:
        """Measure every point not measured yet, ``workers`` at a time."""
        todo = {}
        for point in points:
            if (key := self._key(point)) not in self.memo:
                todo.setdefault(key, point)
        if self.workers == 1 or len(todo) < 2:
            for key, point in todo.items():
                self.measure(point, key)
            return
        _ = self.evaluator.reference  # the float outputs, once, before the threads start
        running: dict = {}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for key, point in todo.items():
                while len(running) >= self.workers:
                    self._collect(running, wait(running, return_when=FIRST_COMPLETED).done)
                running[pool.submit(self._measure, self._model(point))] = key
            self._collect(running, wait(running).done)

    def _collect(self, running: dict, done) -> None:
        for future in done:
            self._store(running.pop(future), future.result())


def chosen_on(rows: list[dict]) -> str:
    """The split a method's points are chosen on: ``validation`` where every point was
    measured there, else ``search``."""
    return "validation" if rows and all("validation" in r for r in rows) else "search"


def _best_under(rows: list[dict], objective: str, limit: float) -> dict | None:
    inside = [r for r in rows if r["search"].get(objective) is not None and r["search"][objective] <= limit]
    if not inside:
        return None
    on = chosen_on(rows)
    best = min(inside, key=lambda r: (r[on]["acc_drop"], r["search"][objective]))
    return {"limit": limit, "label": best["label"], objective: best["search"][objective], "chosen_on": on,
            "search_drop": best["search"]["acc_drop"], "choice_drop": best[on]["acc_drop"],
            "test_drop": best["test"]["acc_drop"], "test_metric": best["test_metric"]}


def _validation_readings(setup: Setup, fronts: list[list[Point]], workers: int) -> TestSplit | None:
    """Every reported point measured on the validation split (None without one); a point
    that brings its reading (qaev_default's, taken within its time) is not measured again."""
    if setup.validation is None:
        return None
    split = TestSplit(setup, workers=workers, evaluator=setup.validation)
    for point in (p for front in fronts for p in front if "validation" in p.extra):
        key = split._key(point)
        split.memo[key], split.errors[key] = point.extra["validation"]["metric"], point.extra["validation"]["se"]
    split.measure_all([p for front in fronts for p in front])
    return split


def summarise(setup: Setup, results: list[MethodResult], *, size_x, latency_x, test_workers: int = 1) -> dict:
    """Every figure of the comparison, test-split figures first."""
    names = list(setup.objectives)
    floats = setup.problem().float_objectives()
    scale_search = [setup.search.float_value if n == "acc_drop" else floats[n] for n in names]
    scale_test = [setup.test.float_value if n == "acc_drop" else floats[n] for n in names]
    fronts = [reported(result, names) for result in results]
    split = TestSplit(setup, workers=test_workers)
    split.measure_all([p for front in fronts for p in front])
    checked = _validation_readings(setup, fronts, test_workers)
    budgets = [("size_mb", floats.get("size_mb"), x) for x in size_x]
    if setup.hardware is not None:
        from qaev.quantize.sizes import estimate_cost

        est = estimate_cost(setup.quantizer.layers, QuantConfig(), setup.hardware).est_latency_ms
        budgets += [("est_latency_ms", est, x) for x in latency_x]
        floats = {**floats, "est_latency_ms": est}
    methods = []
    for result, front in zip(results, fronts):
        rows = []
        for p in front:
            value = split.measure(p)
            test = {**p.objectives, "acc_drop": setup.test.drop(value)}
            rows.append({"label": p.label, "key": p.key, "search": p.objectives, "search_metric": p.metric,
                         "test": test, "test_metric": value, "test_se": split.error(p), "extra": p.extra,
                         "config": p.config})  # to build the point again (None: another tool's model)
            if checked is not None:
                seen = checked.measure(p)
                rows[-1].update({"validation": {**p.objectives, "acc_drop": setup.validation.drop(seen)},
                                 "validation_metric": seen, "validation_se": checked.error(p)})
        F_test = np.array([_vector(r["test"], names) for r in rows]).reshape(-1, len(names))
        F_search = np.array([_vector(r["search"], names) for r in rows]).reshape(-1, len(names))
        best = {f"{obj} <= float/{x:g}": _best_under(rows, obj, ref / x) for obj, ref, x in budgets if ref}
        methods.append({"method": result.method, "evaluations": result.evaluations, "wall_s": result.wall_s,
                        "passes": result.passes if result.passes is not None else float(result.evaluations),
                        "hv_test": hypervolume(F_test, scale_test), "hv_search": hypervolume(F_search, scale_search),
                        "best_under": best, "notes": list(result.notes), "points": rows,
                        "all_points": [p.to_dict() for p in result.points]})
    hv = {m["method"]: m["hv_test"] for m in methods}
    base = max((v for k, v in hv.items() if not k.startswith("qaev")), default=0.0)
    checked_float = {} if setup.validation is None else {"validation_metric": setup.validation.float_value}
    return {"float": {"search_metric": setup.search.float_value, "test_metric": setup.test.float_value,
                      **checked_float, **floats},
            "hypervolume": {"reference_point": REF_POINT, "normalised_by": "float model value per objective "
                            "(acc_drop by the float metric)", "scale_test": scale_test, "scale_search": scale_search,
                            "qaev_over_best_baseline": hv["qaev"] / base if base and "qaev" in hv else None,
                            **{f"{m}_over_best_baseline": hv[m] / base for m in ("qaev_screened", "qaev_informed")
                               if base and m in hv}},
            "test_measurements": split.count, "methods": methods}


def environment(setup: Setup, args, argv) -> dict:
    """Model hash, versions, machine, hardware table, seed, and what each number is."""
    import onnx
    import onnxruntime
    import pymoo
    import scipy

    table = setup.hardware
    return {
        "command": "python benchmarks/compare.py " + " ".join(argv),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "problem": setup.name, "metric": setup.search.metric.name, "budget": args.budget, "seed": args.seed,
        "time_minutes": args.time, "searched_space": setup.space.describe(),
        "space": {"w_bits": args.w_bits, "acts": args.acts, "granularity": args.granularity,
                  "roundings": args.roundings, "bias_correction": args.bias_correction,
                  "weight_range": args.weight_range, "symmetry": args.symmetry,
                  "baseline_act": args.baseline_act},
        "objectives": {n: get_objective(n).kind.value for n in setup.objectives},
        "model_sha256": setup.quantizer.model.sha256,
        "split": {"search": len(setup.search.data), "test": len(setup.test.data), "calib": len(setup.parts.calib),
                  "validation": 0 if setup.validation is None else len(setup.validation.data),
                  "how": ("problem's test split" if getattr(setup.parts, "test", None) is not None
                          else f"evaluation data halved, seed {args.seed}")
                  + ("" if setup.validation is None else f"; validation: {args.validation:g} of the search data, "
                     f"seed {args.seed}")},
        "hardware": None if table is None else {"name": table.name, "device": table.device, "path": table.path,
                                                "kind": "estimate"},
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                     "onnx": onnx.__version__, "pymoo": pymoo.__version__, "numpy": np.__version__,
                     "scipy": scipy.__version__},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "kinds": {"acc_drop / metric": "measured with ONNX Runtime (search and test splits)",
                  "size_mb": "exact bit count (ORT tools: bytes of the file's initializers)",
                  "est_latency_ms / est_energy_mj": "estimated from the hardware table (ORT tools: from the nearest "
                  "qaev config)", "host_latency_ms": "measured on this host", "hypervolume": "computed from the above",
                  "wall_s": "measured"},
    }


def print_table(doc: dict) -> None:
    """The per-method table (test-split figures)."""
    methods = doc["methods"]
    keys = list(methods[0]["best_under"]) if methods else []
    env = doc["env"]
    budget = (f"{env['time_minutes']:g} min per method" if env.get("time_minutes")
              else f"budget {env['budget']} full evaluations")
    print(f"\n{env['problem']}: {budget}, seed {env['seed']}; "
          f"float {doc['float']['search_metric']:.2f} (search) / {doc['float']['test_metric']:.2f} (test); "
          f"figures on the test split ({doc['env']['split']['test']} samples)")
    head = f"{'method':13s} {'evals':>5s} {'passes':>6s} {'wall_s':>7s} {'HV test':>8s} {'HV search':>9s}"
    print(head + "".join(f"  {k:>26s}" for k in keys))
    for m in methods:
        cells = ""
        for k in keys:
            b = m["best_under"][k]
            cells += "  " + ("-" if b is None else f"{b['test_metric']:.2f} (drop {b['test_drop']:+.2f})").rjust(26)
        passes = m.get("passes", m["evaluations"])  # compare.json files written before passes were recorded
        print(f"{m['method']:13s} {m['evaluations']:5d} {passes:6.1f} {m['wall_s']:7.2f} {m['hv_test']:8.4f} "
              f"{m['hv_search']:9.4f}" + cells)
    ratio = doc["hypervolume"]["qaev_over_best_baseline"]
    if ratio is not None:
        print(f"qaev HV (test) / best baseline HV (test): {ratio:.3f}")
    for method, how in (("qaev_screened", "budget in passes of the search split"),
                        ("qaev_informed", "noise probes charged in passes of the search split")):
        value = doc["hypervolume"].get(f"{method}_over_best_baseline")
        if value is not None:
            print(f"{method} HV (test) / best baseline HV (test): {value:.3f} ({how})")


def tolerance_figures(doc: dict, tolerance: float) -> dict:
    """Two readings of the test-split fronts beside the hypervolume, recomputed from the
    reported points (so any compare.json can be read again): the hypervolume of the ideal
    point of every method's points together (what no ratio in this run could exceed), and
    :func:`qaev.search.front.tolerance_hypervolume` per method (drop 0..``tolerance`` points;
    for a method that reported near points, also ``"<method> (front alone)"`` without them)."""
    names = list(doc["env"]["objectives"])
    scale = doc["hypervolume"]["scale_test"]
    fronts = {m["method"]: np.array([[r["test"][n] for n in names] for r in m["points"]]).reshape(-1, len(names))
              for m in doc["methods"]}
    alone = {f"{m['method']} (front alone)": np.array([[r["test"][n] for n in names] for r in m["points"]
                                                       if not r["extra"].get("near")]).reshape(-1, len(names))
             for m in doc["methods"] if any(r["extra"].get("near") for r in m["points"])}
    within = {k: tolerance_hypervolume(F, scale, drop=names.index("acc_drop"), tolerance=tolerance)
              for k, F in {**fronts, **alone}.items()}
    baselines = [m for m in doc["methods"] if not m["method"].startswith("qaev")]
    best_hv = max((m["hv_test"] for m in baselines), default=0.0)
    best_within = max((within[m["method"]] for m in baselines), default=0.0)
    ceiling = hypervolume_ceiling(np.vstack(list(fronts.values())), scale) if fronts else 0.0
    return {"tolerance": tolerance, "ceiling": ceiling,
            "ceiling_over_best_baseline": ceiling / best_hv if best_hv else None,
            "within_tolerance": within,
            "within_over_best_baseline": {k: v / best_within for k, v in within.items()
                                          if k.startswith("qaev") and best_within}}


def print_tolerance(figures: dict) -> None:
    """The :func:`tolerance_figures` lines."""
    ratio = figures["ceiling_over_best_baseline"]
    print(f"\nHV ceiling: the ideal point of all methods' test points together has HV {figures['ceiling']:.4f}"
          + ("" if ratio is None else f", {ratio:.3f}x the best baseline's: no method's ratio could exceed that"))
    print(f"within-tolerance HV (test; drop 0..{figures['tolerance']:g} points, clipped at 0, x each cost 0..float; "
          "1 = every tolerance met at zero size):")
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in figures["within_tolerance"].items()))
    for k, v in figures["within_over_best_baseline"].items():
        print(f"  {k} / best baseline: {v:.3f}")


def smallest_within(doc: dict, limit: float, cost: str = "size_mb") -> list[dict]:
    """Per method, its lowest-``cost`` reported point within ``limit`` metric points of
    float on the split the points are chosen on (:func:`chosen_on`: the validation split
    where the run has one, else the search split) and on the search split, as
    :func:`qaev.runtime.rundir.recommend` chooses, with that point's test-split drop."""
    ref = doc["float"].get(cost)
    rows = []
    for m in doc["methods"]:
        on = chosen_on(m["points"])
        costed = [r for r in m["points"] if r["search"].get(cost) is not None]
        pick = _recommend([(r["search"], r.get("validation")) for r in costed], ["acc_drop", cost], limit)
        best = None if pick is None else costed[pick["id"]]
        rows.append({"method": m["method"], "limit": limit, "cost": cost, "chosen_on": on, "point": None
                     if best is None else {
                         cost: best["search"][cost], "x_smaller": ref / best["search"][cost] if ref else None,
                         "search_drop": best["search"]["acc_drop"], "choice_drop": best[on]["acc_drop"],
                         "test_drop": best["test"]["acc_drop"], "test_se": best.get("test_se")}})
    return rows


def print_within(doc: dict, limits) -> None:
    """The :func:`smallest_within` table for each limit."""
    for limit in limits:
        rows = smallest_within(doc, limit)
        on = rows[0]["chosen_on"] if rows else "search"
        print(f"\nsmallest size_mb within {limit:g} points of float on the {on} split (float "
              f"{doc['float']['size_mb']:.2f} MB):")
        for row in rows:
            p = row["point"]
            print(f"  {row['method']:13s} " + ("-" if p is None else
                  f"{p['x_smaller']:5.2f}x  {p['size_mb']:8.3f} MB  search drop {p['search_drop']:+.2f}  "
                  + ("" if row["chosen_on"] == "search" else f"{row['chosen_on']} drop {p['choice_drop']:+.2f}  ")
                  + f"test drop {p['test_drop']:+.2f}"
                  + ("" if p.get("test_se") is None else f" +-{p['test_se']:.2f}")))


def seed_row(doc: dict, tolerance: float) -> dict:
    """One run's reading for the seeds summary: qaev's and each baseline's smallest point
    within ``tolerance`` (:func:`smallest_within`: chosen on validation and search), whether
    it holds on the test split (test drop <= ``tolerance``), the largest baseline point that
    holds, their size ratio (None when qaev's choice does not hold or no baseline's does)
    and the within-tolerance hypervolume ratio."""
    rows = {row["method"]: row["point"] for row in smallest_within(doc, tolerance)}
    ours = next((m for m in rows if m == "qaev_default"), next((m for m in rows if m.startswith("qaev")), None))

    def holds(point) -> bool:
        return point is not None and point["test_drop"] <= tolerance

    held = {m: p for m, p in rows.items() if not m.startswith("qaev") and holds(p)}
    best = max(held, key=lambda m: held[m]["x_smaller"], default=None)
    qaev = rows.get(ours)
    ratio = (qaev["x_smaller"] / held[best]["x_smaller"] if holds(qaev) and best is not None else None)
    hv = tolerance_figures(doc, tolerance)["within_over_best_baseline"].get(ours)
    return {"problem": doc["env"]["problem"], "seed": doc["env"]["seed"], "tolerance": tolerance, "qaev": qaev,
            "qaev_holds": holds(qaev), "baseline": best, "baseline_point": None if best is None else held[best],
            "ratio": ratio, "hv_ratio": hv}


def print_seeds(docs: list[dict], tolerance: float | None = None) -> list[dict]:
    """The seeds summary: one line per run (qaev's choice and the best baseline's that holds
    on test, each with its test drop and paired SE), then per problem and over all runs the
    mean and lowest size ratio and the mean within-tolerance hypervolume ratio. A run where
    qaev's choice does not hold on test has no ratio and counts as below 1.0."""
    rows = [seed_row(doc, default_tolerance(doc["env"]["metric"]) if tolerance is None else tolerance)
            for doc in docs]

    def point(p) -> str:
        se = "" if p.get("test_se") is None else f" +-{p['test_se']:.2f}"
        return f"{p['x_smaller']:5.2f}x test {p['test_drop']:+.2f}{se}"

    print(f"{'problem':28s} {'seed':>4s} {'tol':>4s}  {'qaev choice':26s} {'best baseline holding on test':38s} "
          f"{'size ratio':>10s} {'HV ratio':>8s}")
    for r in rows:
        q = "-" if r["qaev"] is None else point(r["qaev"]) + ("" if r["qaev_holds"] else " (beyond)")
        b = "-" if r["baseline"] is None else f"{r['baseline']:8s} {point(r['baseline_point'])}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        hv = "-" if r["hv_ratio"] is None else f"{r['hv_ratio']:.3f}"
        print(f"{r['problem']:28s} {r['seed']:4d} {r['tolerance']:4g}  {q:26s} {b:38s} {ratio:>10s} {hv:>8s}")
    groups = {p: [r for r in rows if r["problem"] == p] for p in dict.fromkeys(r["problem"] for r in rows)}
    for name, group in [*groups.items(), ("all runs", rows)]:
        ratios = [r["ratio"] for r in group if r["ratio"] is not None]
        hvs = [r["hv_ratio"] for r in group if r["hv_ratio"] is not None]
        missing = len(group) - len(ratios)
        print(f"{name}: {len(group)} run(s); size ratio mean "
              + ("-" if not ratios else f"{np.mean(ratios):.3f}, lowest {min(ratios):.3f}")
              + (f" ({missing} run(s) without a ratio: qaev's choice beyond tolerance on test, or no baseline's "
                 "within)" if missing else "")
              + ("" if not hvs else f"; within-tolerance HV ratio mean {np.mean(hvs):.3f}"))
    return rows


def plot(doc: dict, path: Path) -> None:
    """Every method's test-split points, acc_drop against each other objective."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [n for n in doc["env"]["objectives"] if n != "acc_drop"] or ["acc_drop"]
    fig, axes = plt.subplots(1, len(others), figsize=(6 * len(others), 4.5), squeeze=False)
    markers = dict(zip(METHODS, "o^sDvx"))
    for ax, name in zip(axes[0], others):
        for m in doc["methods"]:
            pts = sorted((r["test"][name], r["test"]["acc_drop"]) for r in m["points"])
            if pts:
                x, y = zip(*pts)
                ax.plot(x, y, marker=markers.get(m["method"].split("[")[0], "o"), linestyle="", label=m["method"],
                        alpha=0.75)
        kind = doc["env"]["objectives"].get(name, "")
        ax.set_xlabel(f"{name} ({kind})")
        ax.set_ylabel(f"acc_drop on the test split ({doc['env']['metric']} points)")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{doc['env']['problem']}: budget {doc['env']['budget']} evaluations per method")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


def _space(args) -> dict:
    """The space every method searches: the options given, the rest from the preset's
    defaults for the model's family with ``--time``, else from the fixed benchmark space."""
    given = {"w_bits": None if args.w_bits is None else bit_list(args.w_bits),
             "acts": csv_list(args.acts) or None, "granularities": csv_list(args.granularity) or None,
             "roundings": csv_list(args.roundings) or None,
             "bias_corrections": None if args.bias_correction is None else
             {"off": [False], "on": [True], "both": [False, True]}[args.bias_correction],
             "weight_range": args.weight_range, "symmetric": None if args.symmetry is None else SYMMETRY[args.symmetry]}
    if args.time is not None:
        return {"preset": "size", **{k: v for k, v in given.items() if v is not None}}
    fixed = {"w_bits": [2, 4, 8], "acts": ["a8", "float"], "granularities": ["per_channel"], "roundings": ["nearest"],
             "bias_corrections": [False], "weight_range": "minmax", "symmetric": [True]}
    return {k: (fixed[k] if v is None else v) for k, v in given.items()}


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="digits")
    parser.add_argument("--budget", type=int, default=200, help="full evaluations per method")
    parser.add_argument("--time", type=float, default=None, metavar="MINUTES",
                        help="wall time per method instead of --budget (probes included); the space defaults to the "
                             "size preset for the model's family and the methods to " + ",".join(TIMED))
    parser.add_argument("--hardware", default=None, help="hardware table for est_* objectives and latency budgets")
    parser.add_argument("--objectives", default="acc_drop,size_mb")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pop", type=int, default=None, help="qaev population (default ~sqrt(2 budget))")
    parser.add_argument("--methods", default=None, help=f"comma list from {','.join(METHODS)}")
    parser.add_argument("--size-x", default="4,7,11", help="size budgets as 'x smaller than float'")
    parser.add_argument("--latency-x", default="1.5,2,3", help="est. latency budgets as 'x faster than float'")
    parser.add_argument("--calib", type=int, default=None)
    parser.add_argument("--eval", type=int, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--within", default="0.5,1", help="drop limits of the smallest-point tables")
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                        help="with --time, qaev_default rebuilds its choice with block reconstruction at the end, as "
                             "qaev search --time does (--no-refine: the search alone, as before 2026-12-07)")
    parser.add_argument("--test-workers", type=int, default=os.cpu_count() or 1,
                        help="points re-measured on the test split at once (threads; default: the cores)")
    parser.add_argument("--validation", type=float, default=0.25,
                        help="share of the search split set apart (seeded) as the validation split every method's "
                             "points are chosen on, as qaev search does (0: choose on the search split, as before "
                             "2026-12-07)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="accuracy drop (metric points) bounding the within-tolerance hypervolume [the tolerance "
                             "qaev search recommends within: 0.5 for Spearman, else 1.0; 1.0 before 2026-12-07]")
    parser.add_argument("--seeds", type=Path, nargs="+", default=None, metavar="JSON",
                        help="summarise several finished runs (compare.json files, e.g. one per problem and seed): "
                             "per run qaev's and the best baseline's smallest point within the tolerance, their "
                             "size ratio, then means per problem")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="print the tables of an existing compare.json instead of running")
    parser.add_argument("--w-bits", default=None, help="weight bits every method may choose (float allowed) "
                        "[2,4,8; with --time the preset's]")
    parser.add_argument("--acts", default=None, help="activation options of the search space [a8,float]")
    parser.add_argument("--granularity", default=None, help="weight granularities of the search space [per_channel]")
    parser.add_argument("--roundings", default=None, help="weight roundings of the search space [nearest]")
    parser.add_argument("--bias-correction", choices=("off", "on", "both"), default=None,
                        help="bias correction: never, always, or a searched gene [off]")
    parser.add_argument("--weight-range", default=None, choices=("minmax", "mse"),
                        help="weight grid range rule of every method's layers [minmax]")
    parser.add_argument("--symmetry", default=None, choices=tuple(SYMMETRY),
                        help="weight grids of every method: symmetric, asymmetric, or both [symmetric]")
    parser.add_argument("--baseline-act", default=None,
                        help="activation setting(s) of the greedy and ILP baselines; a comma list runs each "
                             "(e.g. a8,float), reported as greedy[a8], greedy[float] [a8; with --time: float, "
                             "weight-only, where the space allows it]")
    args = parser.parse_args(argv)
    if args.seeds:
        print_seeds([json.loads(path.read_text()) for path in args.seeds], args.tolerance)
        return 0
    if args.from_json is not None:
        doc = json.loads(args.from_json.read_text())
        print_table(doc)
        tolerance = default_tolerance(doc["env"]["metric"]) if args.tolerance is None else args.tolerance
        print_tolerance(tolerance_figures(doc, tolerance))
        if "size_mb" in doc["env"]["objectives"]:
            print_within(doc, _floats(args.within))
        return 0
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    if "acc_drop" not in objectives:
        parser.error("--objectives must include acc_drop (the test split re-measures it)")
    methods = csv_list(args.methods) or list(TIMED if args.time else [m for m in METHODS if m != "qaev_default"])
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}")
    setup = build_setup(args.problem, objectives=objectives, hardware=args.hardware, seed=args.seed,
                        calib=args.calib, eval=args.eval, space=_space(args), validation=args.validation)
    seconds, budget = None, args.budget
    if args.time is not None:
        seconds = 60.0 * args.time
        budget = max(2, int(seconds / per_evaluation_s(setup)))
        print(f"{args.time:g} min per method: about {budget} evaluations each (one takes "
              f"{seconds / budget:.1f} s: a 4-bit candidate built and run on the search split, measured)", flush=True)
    results = []
    acts = csv_list(args.baseline_act) or [weight_only_act(setup.space) if args.time is not None else "a8"]
    runs = [(m, a) for m in methods for a in (acts if m in ("greedy", "ilp") else [acts[0]])]
    for method, act in runs:
        result = run_method(setup, method, budget=budget, seed=args.seed, pop=args.pop, act=act, seconds=seconds,
                            refine=args.refine)
        if method in ("greedy", "ilp") and len(acts) > 1:
            result = replace(result, method=f"{method}[{act}]")
        print(f"{result.method:13s} {result.evaluations:4d} evaluations  {result.wall_s:6.2f}s  "
              f"{len(result.points)} points"
              + (f"  ({'; '.join(result.notes)})" if result.notes else ""), flush=True)
        results.append(result)
    doc = {"schema": "qaev.compare/1", "env": environment(setup, args, argv),
           **summarise(setup, results, size_x=_floats(args.size_x), latency_x=_floats(args.latency_x),
                       test_workers=args.test_workers)}
    tolerance = default_tolerance(setup.search.metric.name) if args.tolerance is None else args.tolerance
    doc["hypervolume"]["tolerance"] = tolerance_figures(doc, tolerance)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "compare.json", json.dumps(doc, indent=1, default=str))
    plot(doc, args.out / "fronts.png")
    print_table(doc)
    print_tolerance(doc["hypervolume"]["tolerance"])
    if "size_mb" in objectives:
        print_within(doc, _floats(args.within))
    print(f"wrote {args.out / 'compare.json'} and {args.out / 'fronts.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
