"""A search run from its spec to its run directory: prepare (or reopen) the directory, build
the problem, seed it, search, and write the front, keeping everything finished when the
run is interrupted."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from qaev.data.fingerprint import fingerprint
from qaev.errors import Interrupted, QaevError
from qaev.runtime.parallel import make_runner
from qaev.runtime.rundir import append_history, prepare_run_dir, write_front
from qaev.runtime.store import EvaluationStore
from qaev.search.build import build_problem
from qaev.search.optimize import SearchResult, feasible_front, make_algorithm, measure_exported, minimize
from qaev.search.spec import RunSpec
from qaev.sensitivity.seeding import INFORMED_SHARE, SensitivitySource, load_sensitivity

__all__ = ["RunOutcome", "run_search"]


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


def run_search(spec: RunSpec, *, out: Path, progress, resume: bool = False, force: bool = False, workers: int = 1,
               dask: str | None = None, timeout: float | None = None) -> RunOutcome:
    """Run the search ``spec`` describes into ``out``.

    Args:
        spec: the run.
        out: the run directory (``settings.json``, ``evaluations.jsonl``, ``history.jsonl``,
            ``front.json``, ``configs/``).
        progress: a :class:`qaev.cli.progress.Progress` (or anything with its methods).
        resume: continue the run in ``out`` (its settings must match).
        force: overwrite a non-empty ``out``.
        workers, dask, timeout: how candidates are evaluated (:func:`qaev.runtime.parallel.make_runner`).

    Raises:
        QaevError: the search produced no front (the message says why).
    """
    spec, sensitivity = _with_sensitivity_hash(spec)
    parts = spec.source.load()
    rundir = prepare_run_dir(out, _settings(spec, parts), resume=resume, force=force)
    out, runner = rundir.path, None
    try:
        try:  # everything that checks the options, before anything is evaluated
            runner = make_runner(workers=workers, dask=dask, timeout=timeout, pop=spec.search.pop,
                                 note=progress.message)
            store = EvaluationStore(out / "evaluations.jsonl")
            problem = build_problem(spec, store=store, runner=runner, parts=parts)
            _seed(problem, sensitivity, progress)
        except (QaevError, KeyboardInterrupt):
            if not resume:
                rundir.discard()  # bad options (or an interrupt before the search) leave no run directory behind
            raise
        progress.begin(_begin_text(problem, spec, out, parallel=runner is not None))
        result, interrupted = _search(problem, spec, out, progress)
        _check_result(problem, result, out, interrupted=interrupted)
        doc, interrupted = _write_result(out, problem, result, progress, interrupted=interrupted, spec=spec)
    finally:
        if hasattr(runner, "close"):
            runner.close()
        rundir.close()  # held until front.json is written
    return RunOutcome(doc, problem, interrupted)


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


def _seed(problem, sensitivity: SensitivitySource | None, progress) -> None:
    if sensitivity is None:
        return
    progress.message(f"reading or measuring the per-layer sensitivity that seeds the search ({sensitivity.spec}) ...")
    problem.sensitivity = load_sensitivity(problem, sensitivity, progress=lambda done, total: (
        progress.message(f"  sensitivity probes: {done}/{total}") if done % max(1, total // 5) == 0 else None))


def _begin_text(problem, spec: RunSpec, out: Path, *, parallel: bool) -> str:
    resumed, skipped = len(problem.store), problem.store.skipped
    search = spec.search
    return (f"searching {len(problem.space.searchable)} layers of {problem.quantizer.model.path or 'model'}: "
            f"{', '.join(problem.objectives)}; pop {search.pop} x {search.generations} generations -> {out}"
            + (f" (resuming: {resumed} evaluations on disk)" if resumed else "")
            + (f" ({skipped} damaged line(s) of evaluations.jsonl skipped: a torn write or an invalid record)"
               if skipped else "")
            + (f"; preparing {problem.effective_prefetch} candidate(s) ahead on other threads "
               "(QAEV_PREFETCH=0: off)" if not parallel and problem.effective_prefetch else "")
            + ("; screening on the simulator, finishing on each candidate's own model"
               if problem.simulator is not None else ""))


def _search(problem, spec: RunSpec, out: Path, progress) -> tuple[SearchResult, bool]:
    def on_generation(row, front):
        append_history(out, row.to_dict())
        progress(row, front)

    (out / "history.jsonl").unlink(missing_ok=True)
    search = spec.search
    try:
        algo = (search.algorithm if problem.sensitivity is None
                else make_algorithm(problem, name=search.algorithm, pop_size=search.pop, informed=INFORMED_SHARE))
        result = minimize(problem, algorithm=algo, pop_size=search.pop, n_gen=search.generations, seed=search.seed,
                          callback=on_generation)
        return result, False
    except KeyboardInterrupt:  # stop cleanly: every finished evaluation is on disk; write their front
        return SearchResult(front=feasible_front(problem), history=[],
                            float_objectives=problem.float_objectives()), True


def _write_result(out: Path, problem, result: SearchResult, progress, *, interrupted: bool,
                  spec: RunSpec) -> tuple[dict, bool]:
    """Re-measure the front on exported models (unless interrupted, before or meanwhile),
    write front.json; returns the front document and whether the run was interrupted."""
    if not interrupted:
        progress.message(f"re-measuring the {len(result.front)} front points on their exported models ...")
        try:
            result.front = measure_exported(problem, result.front)
        except KeyboardInterrupt:  # the front as searched is written; the run is marked interrupted
            interrupted = True
    model = problem.quantizer.model
    floats = {"metric": problem.evaluator.float_value, "n": len(problem.evaluator.data), **result.float_objectives}
    source = spec.source.to_dict()
    doc = write_front(out, result.front, objectives=problem.objectives, model_path=model.path,
                      model_sha256=model.sha256, float_values=floats, metric=problem.evaluator.metric.name,
                      evaluations=len(problem.store), seed=spec.search.seed,
                      extra={"problem": source.get("problem"), "hardware": spec.hardware,
                             "ort_level": spec.evaluation.ort_level, "interrupted": interrupted,
                             "history": result.history[-1].to_dict() if result.history else None})
    return doc, interrupted


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
