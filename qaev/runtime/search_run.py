"""A search run from its spec to its run directory: prepare (or reopen) the directory, build
the problem, seed it, search, and write the front, keeping everything finished when the
run is interrupted."""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

from qaev.config import BlockSettings, QuantConfig
from qaev.config_io import load_config
from qaev.data.fingerprint import fingerprint
from qaev.errors import Interrupted, QaevError
from qaev.quantize import export_model
from qaev.quantize.footprint import sizes_of
from qaev.quantize.sizes import other_bytes
from qaev.runtime.parallel import make_runner
from qaev.runtime.refining import REFINE_ITERS, record_refined, refine_point, shipped_text
from qaev.runtime.rundir import append_history, prepare_run_dir, write_front
from qaev.runtime.store import EvaluationStore
from qaev.runtime.time_budget import PhaseClock, TimeBudget, time_budget, typical_candidate_s
from qaev.search.build import build_problem
from qaev.search.optimize import SearchResult, feasible_front, make_algorithm, minimize
from qaev.search.remeasure import remeasure_front
from qaev.search.spec import RunSpec
from qaev.search.surrogate import unpredictable
from qaev.sensitivity.seeding import INFORMED_SHARE, SensitivitySource, load_sensitivity

__all__ = ["RunOutcome", "run_search", "default_tolerance"]


@dataclass(frozen=True)
class RunOutcome:
    """What a run wrote: the front document, the problem, and whether it was interrupted."""

    doc: dict
    problem: object
    interrupted: bool


def _with_sensitivity_hash(spec: RunSpec) -> tuple[RunSpec, SensitivitySource | None]:
    if spec.search.sensitivity is None:
        return spec, None
    source = SensitivitySource.parse(spec.search.sensitivity)
    digest = source.settings.get("file_sha256")
    return replace(spec, search=replace(spec.search, sensitivity_sha256=digest)), source


def _settings(spec: RunSpec, parts) -> dict:
    return {"spec": spec.to_dict(), "model_sha256": parts.model.sha256,
            "data": {"calib": len(parts.calib), "eval": len(parts.eval),
                     "calib_sha256": fingerprint(parts.calib), "eval_sha256": fingerprint(parts.eval)}}


def default_tolerance(metric: str) -> float:
    """Metric points of drop the recommended point may lose: 0.5 for rank correlations
    (Spearman x100), else 1.0."""
    return 0.5 if metric == "spearman" else 1.0


def run_search(spec: RunSpec, *, out: Path, progress, resume: bool = False, force: bool = False, workers: int = 1,
               dask: str | None = None, timeout: float | None = None) -> RunOutcome:
    """Run the search ``spec`` describes into ``out``.

    Args:
        spec: the run. With ``search.time_minutes`` the run (loading, calibration and
            probes included) stops starting candidates in time to re-measure its front and
            finish within the budget; ``front.json`` is rewritten after every generation.
        out: the run directory (``settings.json``, ``evaluations.jsonl``, ``history.jsonl``,
            ``front.json``, ``configs/``).
        progress: a :class:`qaev.cli.progress.Progress` (or anything with its methods).
        resume: continue the run in ``out`` (its settings must match).
        force: overwrite a non-empty ``out``.
        workers, dask, timeout: how candidates are evaluated (:func:`qaev.runtime.parallel.make_runner`).

    Raises:
        QaevError: the search produced no front (the message says why).
    """
    start = time.monotonic()
    clock = PhaseClock(start)
    spec, sensitivity = _with_sensitivity_hash(spec)
    parts = spec.source.load()
    bounded = _with_default_tolerance(spec, spec.evaluation.metric or parts.metric)
    defaulted, spec = bounded is not spec, bounded
    rundir = prepare_run_dir(out, _settings(spec, parts), resume=resume, force=force)
    out, runner = rundir.path, None
    try:
        try:  # everything that checks the options, before anything is evaluated
            runner = make_runner(workers=workers, dask=dask, timeout=timeout, pop=spec.search.pop,
                                 note=progress.message)
            store = EvaluationStore(out / "evaluations.jsonl")
            problem = build_problem(spec, store=store, runner=runner, parts=parts)
            clock.mark("setup")
            _seed(problem, sensitivity, progress)
            clock.mark("probes")
        except (QaevError, KeyboardInterrupt):
            if not resume:
                rundir.discard()  # bad options (or an interrupt before the search) leave no run directory behind
            raise
        progress.begin(_begin_text(problem, spec, out, parallel=runner is not None))
        budget = _budget(problem, spec, progress, start=start, workers=workers)
        result, interrupted = _search(problem, spec, out, progress, budget=budget)
        clock.mark("search")
        if not result.front and defaulted:
            result.front = _beyond_default_tolerance(problem, spec, progress, interrupted=interrupted)
        _check_result(problem, result, out, interrupted=interrupted)
        doc, interrupted = _write_result(out, problem, result, progress, interrupted=interrupted, spec=spec)
        clock.mark("re-measuring the front")
        if spec.search.refine and doc.get("recommended") and not interrupted:
            interrupted = _refine_recommended(out, problem, doc, spec, progress, budget=budget)
            clock.mark("rebuild")
        progress.message(clock.text(None if budget is None else budget.end - start))
    finally:
        if hasattr(runner, "close"):
            runner.close()
        rundir.close()  # held until front.json is written
    return RunOutcome(doc, problem, interrupted)


def _budget(problem, spec: RunSpec, progress, *, start: float, workers: int) -> TimeBudget | None:
    """The run's time budget (None without ``--time``), said; the progress display told the deadline."""
    budget = None
    if spec.search.time_minutes is not None:
        budget, text = time_budget(problem, spec.search.time_minutes, start, workers=max(1, workers),
                                   refine=spec.search.refine)
        progress.message(text)
    if hasattr(progress, "candidate"):
        problem.on_candidate = progress.candidate
        progress.deadline = None if budget is None else budget.deadline(0)
    return budget


def _check_result(problem, result: SearchResult, out: Path, *, interrupted: bool) -> None:
    """Raise when the search has no front to write, saying why and what was kept."""
    if not result.front and interrupted:
        kept = len(problem.store)
        raise Interrupted(
            f"before the promising candidates were measured on the full set ({kept} evaluations kept in {out}); "
            f"continue with --out {out} --resume" if problem.screening and kept else
            f"before any candidate finished ({kept} evaluations kept in {out}); continue with --out {out} --resume")
    if not result.front:
        raise QaevError(_failure_summary(problem))


def _beyond_default_tolerance(problem, spec: RunSpec, progress, *, interrupted: bool) -> list:
    """The front without the default bound on the drop, when no candidate met it (a bound
    the user gave stays a bound): the trade-offs found are kept, none is recommended."""
    bound = spec.constraints["max_drop"]
    scoring = replace(problem.scoring, constraints={k: v for k, v in problem.scoring.constraints.items()
                                                    if k != "max_drop"})
    # a screening search finished none of its candidates: take them at their first-stage
    # values (the front is re-measured in full on its exported models next)
    front = scoring.front(list(problem.store.records()), provisional=interrupted or problem.screening)
    if front:
        progress.message(f"no candidate lost less than the default tolerance of {bound:g} metric points; the front of "
                         "all candidates is written, with no recommended point (--max-drop sets another bound)")
    return front


def _seed(problem, sensitivity: SensitivitySource | None, progress) -> None:
    if sensitivity is None:
        return
    progress.message(f"reading or measuring the per-layer sensitivity that seeds the search ({sensitivity.spec}) ...")
    problem.sensitivity = load_sensitivity(problem, sensitivity, progress=lambda done, total: (
        progress.message(f"  sensitivity probes: {done}/{total}") if done % max(1, total // 5) == 0 else None))


def _with_default_tolerance(spec: RunSpec, metric: str) -> RunSpec:
    """A spec whose metric objective is bounded: by ``max_drop`` as given, else by the
    metric's default tolerance (also the recommendation's)."""
    if "acc_drop" not in spec.objectives or "max_drop" in spec.constraints:
        return spec
    return replace(spec, constraints={**spec.constraints, "max_drop": default_tolerance(metric)})


def _begin_text(problem, spec: RunSpec, out: Path, *, parallel: bool) -> str:
    resumed, skipped = len(problem.store), problem.store.skipped
    search = spec.search
    return (f"searching {len(problem.space.searchable)} layers of {problem.quantizer.model.path or 'model'}: "
            f"{', '.join(problem.objectives)}; pop {search.pop} x "
            + (f"{search.generations} generations" if search.time_minutes is None else "generations until the time")
            + f" -> {out}"
            + (f" (resuming: {resumed} evaluations on disk)" if resumed else "")
            + (f" ({skipped} damaged line(s) of evaluations.jsonl skipped: a torn write or an invalid record)"
               if skipped else "")
            + (f"; preparing {problem.effective_prefetch} candidate(s) ahead on other threads "
               "(QAEV_PREFETCH=0: off)" if not parallel and problem.effective_prefetch else "")
            + ("; screening on the simulator, finishing on each candidate's own model"
               if problem.simulator is not None else ""))


def _search(problem, spec: RunSpec, out: Path, progress, *, budget: TimeBudget | None) -> tuple[SearchResult, bool]:
    floats = None

    def on_generation(row, front):
        nonlocal floats
        append_history(out, row.to_dict())
        floats = floats or _float_values(problem)
        if front:  # every generation leaves a front on disk (search-split values, not yet re-measured)
            _write(out, problem, spec, front, floats, provisional=True, history=row)
        if budget is not None and front:  # keep the time the front's re-measuring will take
            budget.time_export(lambda: export_model(problem.quantizer, QuantConfig.from_dict(front[0].config)))
            problem.deadline = budget.deadline(len(front), candidate_s=typical_candidate_s(problem.store.records()))
            if hasattr(progress, "deadline"):
                progress.deadline = problem.deadline
        progress(row, front)

    (out / "history.jsonl").unlink(missing_ok=True)
    search = spec.search
    try:
        result = minimize(problem, algorithm=_algorithm(problem, spec, progress), pop_size=search.pop,
                          n_gen=search.generations, seed=search.seed, callback=on_generation,
                          deadline=None if budget is None else budget.deadline(0))
        return result, False
    except KeyboardInterrupt:  # stop cleanly: every finished evaluation is on disk; write their front
        return SearchResult(front=feasible_front(problem), history=[],
                            float_objectives=problem.float_objectives()), True


def _algorithm(problem, spec: RunSpec, progress):
    """The run's algorithm: the predictor where asked for and where it applies (else a
    line saying why not), the first population seeded from sensitivity when there is one."""
    search = spec.search
    predictor = search.predictor
    why = unpredictable(problem) if predictor else None
    if why is not None:
        progress.message(f"predictor off: {why}")
        predictor = False
    seeded = {} if problem.sensitivity is None else {"informed": INFORMED_SHARE}
    return make_algorithm(problem, name=search.algorithm, pop_size=search.pop, predictor=predictor, **seeded)


def _float_values(problem) -> dict:
    floats = {"metric": problem.evaluator.float_value, "n": len(problem.evaluator.data), **problem.float_objectives()}
    model = problem.quantizer.model
    floats["sizes"] = {"bit_count_mb": sizes_of(problem.quantizer.layers, QuantConfig(), model.proto).bit_count_mb,
                       "file_mb": model.proto.ByteSize() / 1e6}
    if problem.validator is not None:
        floats["validation"] = {"metric": problem.validator.float_value, "n": len(problem.validator.data)}
    return floats


def _sizes(problem, front, files: dict) -> dict:
    """Record key -> its sizes (bit count; the file where it was exported; x smaller)."""
    quantizer = problem.quantizer
    other = other_bytes(quantizer.model.proto, quantizer.layers)
    return {r.key: sizes_of(quantizer.layers, QuantConfig.from_dict(r.config), quantizer.model.proto,
                            file_bytes=files.get(r.key), other=other).to_dict() for r in front}


def _write(out: Path, problem, spec: RunSpec, front, floats: dict, *, provisional: bool, history,
           host_latency=None, interrupted: bool = False, files: dict | None = None) -> dict:
    model = problem.quantizer.model
    source = spec.source.to_dict()
    return write_front(out, front, objectives=problem.objectives, model_path=model.path,
                       model_sha256=model.sha256, float_values=floats, metric=problem.evaluator.metric.name,
                       evaluations=len(problem.store), seed=spec.search.seed,
                       tolerance=spec.constraints.get("max_drop"), host_latency=host_latency,
                       sizes=_sizes(problem, front, files or {}),
                       extra={"problem": source.get("problem"), "hardware": spec.hardware, "preset": spec.preset,
                              "space": problem.space.describe(),
                              "ort_level": spec.evaluation.ort_level, "provisional": provisional,
                              "interrupted": interrupted,
                              "history": history.to_dict() if history is not None else None})


def _write_result(out: Path, problem, result: SearchResult, progress, *, interrupted: bool,
                  spec: RunSpec) -> tuple[dict, bool]:
    """Re-measure the front on exported models, with their host latency (unless
    interrupted, before or meanwhile), write front.json; returns the front document and
    whether the run was interrupted."""
    latency, files = None, {}
    if not interrupted:
        where = "the search split" + (" and the validation split" if problem.validator is not None else "")
        progress.message(f"re-measuring the {len(result.front)} front points on their exported models, on {where}, "
                         "and their host latency at batch 1 beside the float model's ...")
        try:
            again = remeasure_front(problem, result.front, progress=lambda done, total: progress.message(
                f"  re-measured {done}/{total}"))
            result.front, latency, files = again.front, again.host_latency, again.file_bytes
        except KeyboardInterrupt:  # the front as searched is written; the run is marked interrupted
            interrupted = True
    doc = _write(out, problem, spec, result.front, _float_values(problem), provisional=interrupted,
                 history=result.history[-1] if result.history else None, host_latency=latency,
                 interrupted=interrupted, files=files)
    return doc, interrupted


class _ToProgress(logging.Handler):
    """The learning's per-block lines as progress messages."""

    def __init__(self, progress) -> None:
        super().__init__(logging.INFO)
        self.progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.message(f"  {record.getMessage()}")


def _refine_recommended(out: Path, problem, doc: dict, spec: RunSpec, progress, *,
                        budget: TimeBudget | None) -> bool:
    """Rebuild the recommended point with block reconstruction, in the time the budget kept
    for it (:mod:`qaev.runtime.refining`), and write it into ``doc`` and front.json; returns
    whether the run was interrupted meanwhile (the front stays as written)."""
    point = next(p for p in doc["points"] if p["id"] == doc["recommended"]["id"])
    config = load_config(out / point["config"])
    iters, deadline = REFINE_ITERS, None
    if budget is not None and budget.refine is not None:
        left, deadline = budget.end - time.monotonic(), budget.refine.learning_deadline(budget.end)
        iters = budget.refine.iters_within(left, config, most=REFINE_ITERS)
        if not iters:
            progress.message(f"no time left to rebuild the recommended point {point['id']} with block reconstruction "
                             f"({left / 60:.1f} min); qaev refine {out} --recommended does it afterwards")
            return False
    # measured where it is judged: on the validation split, else on the search split
    evaluators = {"validation": problem.validator} if problem.validator else {"search": problem.evaluator}
    progress.message(f"rebuilding the recommended point {point['id']} with block reconstruction ({iters} learning "
                     "steps per block), then measuring it beside the point as searched ...")
    logger, handler = logging.getLogger("qaev.learned"), _ToProgress(progress)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        refined = refine_point(problem.quantizer, config, evaluators,
                               block=BlockSettings(iters=iters, seed=spec.search.seed,
                                                   output_loss=problem.evaluator.metric.output_loss),
                               deadline=deadline)
    except KeyboardInterrupt:
        progress.message(f"rebuilding interrupted; the front is written; qaev refine {out} --recommended rebuilds it")
        return True
    except QaevError as exc:  # the front stands without the rebuild
        warnings.warn(f"the recommended point {point['id']} was not rebuilt with block reconstruction: {exc}",
                      stacklevel=2)
        return False
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    rid = record_refined(out, doc, point, refined)
    progress.message(shipped_text(doc, refined, rid) + f" ({refined.seconds / 60:.1f} min, {refined.steps_text()})")
    return False


def _failure_summary(problem) -> str:
    """Why a search produced no front: failures grouped by reason."""
    records = list(problem.store.records())
    failed = [r for r in records if not r.ok]
    if not records:
        return "the search stopped before any candidate was evaluated"
    if len(failed) < len(records):
        return f"no candidate met the constraints ({len(records)} evaluated, {len(failed)} failed)"
    reasons: dict[str, int] = {}
    for record in failed:
        reason = record.error.split(":")[0]
        reasons[reason] = reasons.get(reason, 0) + 1
    top = ", ".join(f"{n}x {reason}" for reason, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    return f"every one of {len(records)} candidates failed ({top}); first: {failed[0].error}"
