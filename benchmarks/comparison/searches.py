"""qaev's searches at a budget of full evaluations: plain NSGA-II, screened on a first
stage, and seeded from measured output noise."""
from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from qaev.baselines.budget import charged_evaluations
from qaev.baselines.result import MethodResult, Point
from qaev.errors import ConfigError
from qaev.evaluation.staging import Finish, Staging, is_final
from qaev.search.optimize import make_algorithm, minimize
from qaev.sensitivity.proxy import noise_probe_count, output_noise_table

from comparison.splits import Setup

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
    points = tuple(front_point(r, f"front {i}") for i, r in enumerate(result.front))
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
    points = tuple(front_point(r, f"front {i}") for i, r in enumerate(result.front))
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


def front_point(record, label: str) -> Point:
    """A front record as a point, with its drop's standard error on the search split (what
    the front's near points are judged by)."""
    return Point.from_record(record, label, **({} if record.drop_se is None else {"drop_se": record.drop_se}))
