"""``qaev search``, ``qaev export`` and ``qaev problems``."""
from __future__ import annotations

import time
from pathlib import Path

import click

from qaev.cli_options import data_options, data_options_from
from qaev.config_io import load_config
from qaev.errors import ConfigError, ModelError
from qaev.evaluate import Evaluator
from qaev.graph import load_model
from qaev.objectives import OBJECTIVES
from qaev.problem import QuantizationProblem
from qaev.quantize import Quantizer, export_model
from qaev.rundir import append_history, prepare_run_dir, read_front, write_front
from qaev.search import minimize
from qaev.space import SearchSpace
from qaev.store import EvaluationStore
from qaev.tasks import load_task

__all__ = ["search", "export", "problems"]


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def _bits(text: str) -> list[int | None]:
    out = []
    for token in _csv(text):
        if token == "float":
            out.append(None)
        elif token.isdigit():
            out.append(int(token))
        else:
            raise ConfigError(f"--w-bits: {token!r} is not a bit width (2, 3, 4, 6, 8, 16 or float)")
    return out


def _parts(model: Path | None, problem: str | None, kwargs: dict):
    """Model, calibration data, evaluation data and metric from the command's options."""
    from qaev.problems import problem_parts

    options = data_options_from(kwargs, bundled=model is None)
    if model is not None and problem is not None:
        raise ConfigError("give either MODEL or --problem, not both")
    if model is None:
        name = problem or "digits"
        extra = {"data": options.data} if options.data is not None else {}
        parts = problem_parts(name, calib=options.calib, eval=options.eval, seed=options.seed, **extra)
        return parts.model, parts.calib, parts.eval, options.metric or parts.metric, name
    float_model = load_model(model)
    task = load_task(options, float_model)
    return float_model, task.calib, task.eval, task.metric, None


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
@click.option("--exclude", multiple=True, help="Keep these layers float (name or re:REGEX); repeatable.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run directory (default runs/<time>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out (settings must match).")
@click.option("--force", is_flag=True, help="Overwrite a non-empty --out.")
@click.option("--quiet", is_flag=True, help="Print only the final summary line.")
def search(model, problem, hardware, objectives, max_drop, max_size_mb, max_latency_ms, algorithm, pop, generations,
           w_bits, acts, granularity, calibrations, exclude, out, resume, force, quiet, **kwargs) -> None:
    """Search per-layer quantization; write the Pareto front to a run directory."""
    seed = kwargs["seed"]
    float_model, calib, evaluation, metric, problem_name = _parts(model, problem, kwargs)
    constraints = {k: v for k, v in (("max_drop", max_drop), ("max_size_mb", max_size_mb),
                                     ("max_latency_ms", max_latency_ms)) if v is not None}
    settings = {"model_sha256": float_model.sha256, "problem": problem_name, "metric": metric,
                "calib": len(calib), "eval": len(evaluation), "hardware": hardware, "objectives": _csv(objectives),
                "constraints": constraints, "algorithm": algorithm, "pop": pop, "seed": seed,
                "space": {"w_bits": w_bits, "acts": acts, "granularity": granularity, "calibrations": calibrations,
                          "exclude": list(exclude)}}
    out = out or Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    out = prepare_run_dir(out, settings, resume=resume, force=force)
    quantizer = Quantizer.calibrated(float_model, calib)
    space = SearchSpace(layers=quantizer.layers, w_bits=_bits(w_bits), acts=_csv(acts), granularities=_csv(granularity),
                        calibrations=_csv(calibrations), exclude=list(exclude))
    prob = QuantizationProblem(quantizer, Evaluator(float_model, evaluation, metric=metric), space=space,
                               objectives=_csv(objectives), constraints=constraints, hardware=hardware,
                               store=EvaluationStore(out / "evaluations.jsonl"))
    resumed = len(prob.store)
    if not quiet:
        click.echo(f"searching {len(space.searchable)} layers of {float_model.path or 'model'}: "
                   f"{', '.join(prob.objectives)}; pop {pop} x {generations} generations -> {out}"
                   + (f" (resuming: {resumed} evaluations on disk)" if resumed else ""))

    def progress(row, front):
        append_history(out, row.to_dict())
        if not quiet:
            click.echo(f"gen {row.gen:3d}  evaluations {row.evaluations:4d}  cache hits {row.cache_hits:4d}  "
                       f"front {row.front_size:3d}  HV {row.hypervolume:.4f}  {row.elapsed_s:6.1f}s")

    (out / "history.jsonl").unlink(missing_ok=True)
    result = minimize(prob, algorithm=algorithm, pop_size=pop, n_gen=generations, seed=seed, callback=progress)
    floats = {"metric": prob.evaluator.float_value, "n": len(evaluation), **result.float_objectives}
    doc = write_front(out, result.front, objectives=prob.objectives, model_path=float_model.path,
                      model_sha256=float_model.sha256, float_values=floats, metric=metric,
                      evaluations=len(prob.store), seed=seed,
                      extra={"problem": problem_name, "hardware": hardware,
                             "history": result.history[-1].to_dict() if result.history else None})
    if not quiet:
        _print_front(doc)
    click.echo(f"wrote {out / 'front.json'} ({len(doc['points'])} points, {len(prob.store)} evaluations)")


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
def export(run_dir, point_id, all_points, out, model) -> None:
    """Write the deployable ONNX model of front points."""
    doc = read_front(run_dir)
    points = {p["id"]: p for p in doc["points"]}
    if all_points == (point_id is not None):
        raise ConfigError("give exactly one of --point ID or --all")
    if point_id is not None and point_id not in points:
        raise ConfigError(f"--point: {point_id!r} is not in the front (ids: {', '.join(points) or 'none'})")
    float_model = load_model(_model_for(doc, model))
    if float_model.sha256 != doc["model"]["sha256"]:
        raise ModelError(f"{float_model.path}: sha256 differs from the model this front was searched on")
    quantizer = Quantizer(float_model)
    chosen = list(points) if all_points else [point_id]
    for pid in chosen:
        target = out if (out and not all_points) else Path(run_dir) / "models" / f"{pid}.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        proto = export_model(quantizer, load_config(Path(run_dir) / points[pid]["config"]))
        target.write_bytes(proto.SerializeToString())
        click.echo(f"wrote {target} ({target.stat().st_size / 1e6:.3f} MB)")


@click.command()
def problems() -> None:
    """List the ready-made problems."""
    from qaev.problems import list_problems

    for name, description in list_problems():
        click.echo(f"{name:20s} {description}")
