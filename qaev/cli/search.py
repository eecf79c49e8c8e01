"""``qaev search``, ``qaev export`` and ``qaev problems``."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import click

from qaev.cli.data import resolve_data
from qaev.cli.options import bit_list, compact_names_option, csv_list, data_options, data_options_from
from qaev.config_io import load_config, load_layer_settings
from qaev.errors import ConfigError, ModelError, QaevError
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.search.objectives import OBJECTIVES
from qaev.search.problem import QuantizationProblem
from qaev.cli.progress import make_progress
from qaev.quantize import Quantizer, export_model
from qaev.runtime.rundir import append_history, prepare_run_dir, read_front, write_front
from qaev.runtime.parallel import Recipe, make_runner
from qaev.search.minimize import SearchResult, feasible_front, make_algorithm, measure_exported, minimize
from qaev.sensitivity.seeding import INFORMED_SHARE, SensitivitySource, load_sensitivity
from qaev.evaluation.staging import Finish, Staging
from qaev.search.space import SearchSpace
from qaev.runtime.store import EvaluationStore

__all__ = ["search", "export", "problems"]


def _print_front(doc: dict) -> None:
    names = [o["name"] for o in doc["objectives"]]
    kinds = {o["name"]: o["kind"] for o in doc["objectives"]}
    header = "  ".join(f"{n + (' (est.)' if kinds[n] == 'estimated' else ''):>18}" for n in names)
    click.echo(f"\nPareto front: {len(doc['points'])} points ({doc['metric']} measured on {doc['float'].get('n', '?')} samples; "
               f"float {doc['float']['metric']:.2f})")
    click.echo(f"  id  {header}  {doc['metric']:>8}")
    for p in doc["points"]:
        values = "  ".join(f"{p['objectives'][n]:>18.4f}" for n in names)
        metric = f"{p['metric']:8.2f}" if p["metric"] is not None else "       -"
        click.echo(f"  {p['id']}  {values}  {metric}")


def _recipe(model, problem_name, data_kwargs: dict, *, staging, **common) -> Recipe:
    """How parallel workers rebuild this search's problem."""
    options = data_options_from(dict(data_kwargs), bundled=model is None)
    stage = asdict(staging) if staging is not None else None
    if model is None:
        extra = {"data": str(options.data)} if options.data is not None else {}
        return Recipe(problem=problem_name, problem_options={"calib": options.calib, "eval": options.eval,
                                                             "seed": options.seed, **extra}, staging=stage, **common)
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    return Recipe(model_path=str(Path(model).resolve()), data_options=data, staging=stage, **common)


@click.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--problem", default=None, help="A ready-made problem (see `qaev problems`); default digits.")
@data_options
@click.option("--hardware", default=None, help="Target table name or YAML path (for estimated objectives).")
@click.option("--objectives", default="acc_drop,size_mb", show_default=True,
              help=f"Comma-separated, from {', '.join(OBJECTIVES)}.")
@click.option("--max-drop", type=float, default=None, help="Constraint: metric points lost at most.")
@click.option("--max-size-mb", type=float, default=None, help="Constraint: weights at most this size.")
@click.option("--max-latency-ms", type=float, default=None, help="Constraint: estimated latency at most.")
@click.option("--algorithm", type=click.Choice(["auto", "nsga2", "nsga3"]), default="auto", show_default=True)
@click.option("--pop", type=int, default=20, show_default=True, help="Population size.")
@click.option("--generations", type=int, default=10, show_default=True)
@click.option("--w-bits", default="2,4,8", show_default=True, help="Allowed weight bits (comma list; float allowed).")
@click.option("--acts", default="a8,float", show_default=True, help="Allowed activations: a4,a8,a16,dyn8,float.")
@click.option("--granularity", default="per_channel", show_default=True,
              help="Allowed: per_tensor,per_channel,block32,block64,block128.")
@click.option("--calibrations", default="minmax", show_default=True, help="Allowed: minmax,percentile,entropy,mse.")
@click.option("--roundings", default="nearest", show_default=True,
              help="Allowed weight roundings: nearest,gptq,codebook (gptq: second-order, data-aware; "
                   "codebook: 2-bit embedding tables as 256 learned 4-weight vectors).")
@click.option("--bias-correction", is_flag=True, help="Search bias correction on/off per layer.")
@click.option("--weight-range", type=click.Choice(["minmax", "mse"]), default="minmax", show_default=True,
              help="Weight grid range per scale group for every layer: min/max, or clipped to the least squared error.")
@click.option("--symmetry", type=click.Choice(["symmetric", "asymmetric", "both"]), default="symmetric",
              show_default=True, help="Weight grids: symmetric (2^b - 1 levels, zero point 0), asymmetric "
                                      "(all 2^b levels and a zero point per scale group), or searched per layer.")
@click.option("--exclude", multiple=True, help="Keep these layers float (name or re:REGEX); repeatable.")
@click.option("--freeze", type=click.Path(path_type=Path), default=None,
              help="YAML/JSON file mapping layer selectors (name or re:REGEX) to fixed settings, e.g. "
                   "'re:word_embeddings: {w_bits: 2, act: float, rounding: codebook}'; those layers are not searched.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<time>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out (settings must match).")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
@click.option("--workers", type=int, default=1, show_default=True, help="Local worker processes (1 ORT thread each).")
@click.option("--dask", "dask_address", default=None, help="Evaluate on a dask.distributed cluster at ADDRESS.")
@click.option("--timeout", type=float, default=None,
              help="Seconds one evaluation may take (runs evaluations in worker processes).")
@click.option("--staged", type=click.Choice([f.value for f in Finish]), is_flag=False, flag_value="race", default=None,
              help="Race candidates over 1/8, 1/4, 1/2 of the data and finish only those that can reach the front: "
                   "on arrival (--staged or --staged race), or search on the first 1/8 and finish the promising "
                   "ones at the end (--staged end).")
@click.option("--screen-on", type=click.Choice(["auto", "simulator", "model"]), default="auto", show_default=True,
              help="With --staged end: screen candidates on one float graph standing in for every QDQ model "
                   "(simulator: no graph build or session per candidate), on each candidate's own QDQ model, or "
                   "auto: the simulator for small models, where opening a session costs more than the screen. "
                   "Finishing always measures each candidate's own model.")
@click.option("--sensitivity", "sensitivity_spec", default=None, metavar="noise[:N] | FILE",
              help="Seed half of the first population along the greedy lowering path over a per-layer "
                   "sensitivity: `noise` probes each layer alone at each lower width on N (default 32) "
                   "unlabelled samples and measures the output noise; FILE is a `qaev sensitivity --out` "
                   "table of measured drops. Default: the free weight-error proxy seeds 30%.")
@click.option("--quiet", is_flag=True, help="Print only the final summary line.")
@click.option("--json-progress", is_flag=True, help="One JSON object per generation on stdout instead of the bar.")
def search(model, problem, hardware, objectives, max_drop, max_size_mb, max_latency_ms, algorithm, pop, generations,
           w_bits, acts, granularity, calibrations, roundings, bias_correction, weight_range, symmetry, exclude, freeze, out,
           resume, force, workers, dask_address, timeout, staged, screen_on, sensitivity_spec, quiet, json_progress,
           **kwargs) -> None:
    """Search per-layer quantization; write the Pareto front to a run directory."""
    progress = make_progress("json" if json_progress else "quiet" if quiet else "bar", total_generations=generations,
                             objectives=csv_list(objectives))
    click.get_current_context().call_on_close(progress.close)
    progress.start(f"qaev search: pop {pop} x {generations} generations; loading the model and calibrating ...")
    seed = kwargs["seed"]
    data_kwargs = dict(kwargs)
    resolved = resolve_data(model, problem, kwargs)
    float_model, calib, evaluation, metric, problem_name = (resolved.model, resolved.calib, resolved.eval,
                                                            resolved.metric, resolved.problem)
    constraints = {k: v for k, v in (("max_drop", max_drop), ("max_size_mb", max_size_mb),
                                     ("max_latency_ms", max_latency_ms)) if v is not None}
    space_options, space_settings = _space(w_bits=w_bits, acts=acts, granularity=granularity, calibrations=calibrations,
                                           exclude=exclude, roundings=roundings, bias_correction=bias_correction,
                                           weight_range=weight_range, symmetry=symmetry, freeze=freeze)
    settings = {"model_sha256": float_model.sha256, "problem": problem_name, "metric": metric,
                "calib": len(calib), "eval": len(evaluation), "hardware": hardware, "objectives": csv_list(objectives),
                "constraints": constraints, "algorithm": algorithm, "pop": pop, "seed": seed,
                "ort_level": os.environ.get("QAEV_ORT_LEVEL", "extended"), "space": space_settings}
    sensitivity = None if sensitivity_spec is None else SensitivitySource.parse(sensitivity_spec)
    if sensitivity is not None:  # likewise
        settings["sensitivity"] = sensitivity.settings
    if staged == Finish.END.value:  # the search path depends on it; other runs' settings stay as they were
        settings["staged"] = staged
        if screen_on != "auto":
            settings["screen_on"] = screen_on
    out = out or Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    out = prepare_run_dir(out, settings, resume=resume, force=force)
    quantizer = Quantizer.calibrated(float_model, calib)
    simulate = {"auto": None, "simulator": True, "model": False}[screen_on]
    staging = Staging(finish=staged, simulate=simulate) if staged else None
    recipe = _recipe(model, problem_name, data_kwargs, metric=metric, objectives=csv_list(objectives),
                     constraints=constraints, hardware=hardware, space=space_options, staging=staging)
    (out / "recipe.json").write_text(json.dumps(asdict(recipe), indent=2, default=list) + "\n")
    runner = make_runner(workers=workers, dask=dask_address, timeout=timeout)
    prob = QuantizationProblem(quantizer, Evaluator(float_model, evaluation, metric=metric),
                               space=SearchSpace(layers=quantizer.layers, **space_options),
                               objectives=csv_list(objectives), constraints=constraints, hardware=hardware,
                               store=EvaluationStore(out / "evaluations.jsonl"), staging=staging, runner=runner,
                               recipe=recipe)
    if sensitivity is not None:
        progress.message(f"reading or measuring the per-layer sensitivity that seeds the search ({sensitivity_spec}) ...")
        prob.sensitivity = load_sensitivity(prob, sensitivity, progress=lambda done, total: (
            progress.message(f"  sensitivity probes: {done}/{total}") if done % max(1, total // 5) == 0 else None))
    resumed = len(prob.store)
    progress.begin(f"searching {len(prob.space.searchable)} layers of {float_model.path or 'model'}: "
                   f"{', '.join(prob.objectives)}; pop {pop} x {generations} generations -> {out}"
                   + (f" (resuming: {resumed} evaluations on disk)" if resumed else "")
                   + (f"; preparing {prob.effective_prefetch} candidate(s) ahead on other threads "
                      "(QAEV_PREFETCH=0: off)" if runner is None and prob.effective_prefetch else "")
                   + ("; screening on the simulator, finishing on each candidate's own model"
                      if prob.simulator is not None else ""))

    def on_generation(row, front):
        append_history(out, row.to_dict())
        progress(row, front)

    (out / "history.jsonl").unlink(missing_ok=True)
    interrupted = False
    try:
        algo = (algorithm if prob.sensitivity is None
                else make_algorithm(prob, name=algorithm, pop_size=pop, informed=INFORMED_SHARE))
        result = minimize(prob, algorithm=algo, pop_size=pop, n_gen=generations, seed=seed, callback=on_generation)
    except KeyboardInterrupt:  # stop cleanly: every finished evaluation is on disk; write their front
        interrupted = True
        result = SearchResult(front=feasible_front(prob), history=[], float_objectives=prob.float_objectives())
    finally:
        if hasattr(runner, "close"):
            runner.close()
    if not result.front and interrupted and prob.screening:
        raise QaevError(f"interrupted before the promising candidates were measured on the full set; "
                        f"rerun with --out {out} --resume to finish them (nothing evaluated is lost)")
    if not result.front:
        raise QaevError(_failure_summary(prob))
    _write_result(out, prob, result, progress, interrupted=interrupted, problem_name=problem_name, hardware=hardware,
                  seed=seed)


SYMMETRY = {"symmetric": [True], "asymmetric": [False], "both": [True, False]}


def _space(*, w_bits, acts, granularity, calibrations, exclude, roundings, bias_correction, weight_range,
           symmetry="symmetric", freeze=None):
    """:class:`SearchSpace` options from the CLI's text, and their record for settings.json
    (genes at their old defaults are left out, so older run directories still resume)."""
    options = {"w_bits": bit_list(w_bits), "acts": csv_list(acts), "granularities": csv_list(granularity),
               "calibrations": csv_list(calibrations), "exclude": list(exclude)}
    recorded = {"w_bits": w_bits, "acts": acts, "granularity": granularity, "calibrations": calibrations,
                "exclude": list(exclude)}
    extra = {"roundings": csv_list(roundings), "bias_corrections": [False, True] if bias_correction else [False]}
    if extra != {"roundings": ["nearest"], "bias_corrections": [False]}:
        recorded.update(extra)
    if weight_range != "minmax":
        extra["weight_range"] = recorded["weight_range"] = weight_range
    if symmetry != "symmetric":
        extra["symmetric"] = SYMMETRY[symmetry]
        recorded["symmetry"] = symmetry
    if freeze is not None:
        frozen = {selector: cfg.to_dict() for selector, cfg in load_layer_settings(freeze).items()}
        extra["frozen"] = recorded["frozen"] = frozen
    return {**options, **extra}, recorded


def _write_result(out: Path, prob, result, progress, *, interrupted: bool, problem_name, hardware, seed) -> None:
    """Re-measure the front on exported models (unless interrupted), write front.json, print."""
    if not interrupted:
        progress.message(f"re-measuring the {len(result.front)} front points on their exported models ...")
        result.front = measure_exported(prob, result.front)
    float_model = prob.quantizer.model
    floats = {"metric": prob.evaluator.float_value, "n": len(prob.evaluator.data), **result.float_objectives}
    doc = write_front(out, result.front, objectives=prob.objectives, model_path=float_model.path,
                      model_sha256=float_model.sha256, float_values=floats, metric=prob.evaluator.metric.name,
                      evaluations=len(prob.store), seed=seed,
                      extra={"problem": problem_name, "hardware": hardware,
                             "history": result.history[-1].to_dict() if result.history else None})
    progress.close()
    if progress.mode == "bar":
        _print_front(doc)
    progress.finish(f"wrote {out / 'front.json'} ({len(doc['points'])} points, {len(prob.store)} evaluations)",
                    front=str(out / "front.json"), points=len(doc["points"]), evaluations=len(prob.store))
    if interrupted:
        click.echo(f"qaev: interrupted; the front of the {len(prob.store)} finished evaluations is written; "
                   f"continue with --out {out} --resume", err=True)
        raise click.exceptions.Exit(130)


def _failure_summary(prob) -> str:
    """Why a search produced no front: failures grouped by reason."""
    records = list(prob.store.records())
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


def _quantizer_for(run_dir: Path, float_model, configs) -> Quantizer:
    """A bare quantizer, or, when a config rounds weights with calibration data (gptq, bias
    correction), the calibrated one the run's recipe rebuilds."""
    if not any(config.needs_data for config in configs):
        return Quantizer(float_model)
    path = Path(run_dir) / "recipe.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: these points need calibration data and the run holds no recipe.json")
    return Recipe(**json.loads(path.read_text())).build().quantizer


def _model_for(doc: dict, model: Path | None) -> Path:
    path = model or (Path(doc["model"]["path"]) if doc["model"].get("path") else None)
    if path is None:
        raise ConfigError("front.json names no model path; pass --model")
    return path


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--point", "point_id", default=None, help="Point id from front.json.")
@click.option("--all", "all_points", is_flag=True, help="Export every point to RUN_DIR/models/.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, help="Output .onnx (with --point).")
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Float model, if it moved.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "ort-overrides"]), default="onnx", show_default=True,
              help="onnx: the quantized model; ort-overrides: ONNX Runtime TensorQuantOverrides JSON.")
@compact_names_option
def export(run_dir, point_id, all_points, out, model, fmt, compact_names) -> None:
    """Write the deployable ONNX model (or ORT overrides) of front points."""
    doc = read_front(run_dir)
    points = {p["id"]: p for p in doc["points"]}
    if all_points == (point_id is not None):
        raise ConfigError("give exactly one of --point ID or --all")
    if point_id is not None and point_id not in points:
        raise ConfigError(f"--point: {point_id!r} is not in the front (ids: {', '.join(points) or 'none'})")
    float_model = load_model(_model_for(doc, model))
    if float_model.sha256 != doc["model"]["sha256"]:
        raise ModelError(f"{float_model.path}: sha256 differs from the model this front was searched on")
    chosen = list(points) if all_points else [point_id]
    configs = {pid: load_config(Path(run_dir) / points[pid]["config"]) for pid in chosen}
    quantizer = _quantizer_for(run_dir, float_model, configs.values())
    for pid in chosen:
        suffix = ".onnx" if fmt == "onnx" else ".ort-overrides.json"
        target = out if (out and not all_points) else Path(run_dir) / "models" / f"{pid}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "ort-overrides":
            _write_overrides(quantizer, configs[pid], pid, target)
            continue
        proto = export_model(quantizer, configs[pid], compact=compact_names)
        target.write_bytes(proto.SerializeToString())
        click.echo(f"wrote {target} ({target.stat().st_size / 1e6:.3f} MB)")


def _write_overrides(quantizer, config, pid: str, target: Path) -> None:
    import json

    from qaev.interop_ort import to_tensor_quant_overrides

    try:
        overrides = to_tensor_quant_overrides(config, quantizer)
    except ConfigError as exc:
        raise ConfigError(f"--point {pid}: {exc}") from None
    target.write_text(json.dumps(overrides, indent=2) + "\n")
    click.echo(f"wrote {target} (TensorQuantOverrides for {len(overrides)} tensors)")


@click.command()
def problems() -> None:
    """List the ready-made problems."""
    from qaev.problems import list_problems

    for name, description in list_problems():
        click.echo(f"{name:20s} {description}")
