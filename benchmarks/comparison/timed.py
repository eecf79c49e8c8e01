"""``qaev_default``: what ``qaev search --time`` does, within a comparison's wall time,
its choice rebuilt with block reconstruction."""
from __future__ import annotations

import logging
import time
from dataclasses import replace

from qaev.baselines.result import MethodResult, Point
from qaev.config import QuantConfig
from qaev.errors import QaevError
from qaev.search.optimize import make_algorithm, minimize
from qaev.sensitivity.proxy import noise_probe_count, output_noise_table

from comparison.readings import recommend_among
from comparison.searches import front_point

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
    points = tuple(_validated(problem, front_point(r, f"front {i}")) for i, r in enumerate(result.front))
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
    pick = recommend_among([(p.objectives, p.extra.get("validation")) for p in candidates], list(problem.objectives),
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
        refined = refine_point(problem.quantizer, config, evaluators, block=block,
                               deadline=budget.refine.learning_deadline(budget.end - extra_s))
    except QaevError as exc:  # no PyTorch, or nothing to rebuild: the front stands, as in qaev search
        logging.getLogger(__name__).warning("qaev_default: %s not rebuilt: %s", chosen.label, exc)
        return None
    split = refined.judged_on
    note = (f"{chosen.label} (chosen on the {pick['chosen_on']} split) rebuilt with block reconstruction "
            f"({refined.steps_text()}, {refined.seconds:.0f} s): {split}-split drop "
            f"{refined.before[split]['acc_drop']:.2f} -> {refined.after[split]['acc_drop']:.2f}")
    if refined.failed():
        return None, note + "; worse by over twice the standard error: not shipped"
    measured = refined.after["search"]
    extra = {"rebuilt_from": chosen.label, "iters": iters} | (
        {"steps": list(refined.config.block.steps)} if refined.config.block.steps else {})
    if "validation" in refined.after:
        extra["validation"] = {k: refined.after["validation"][k] for k in ("metric", "acc_drop", "se")}
    point = Point(label=f"{chosen.label} rebuilt", objectives={**chosen.objectives, "acc_drop": measured["acc_drop"]},
                  metric=measured["metric"], config=refined.config.to_dict(), key=refined.config.key(), extra=extra)
    return point, note
