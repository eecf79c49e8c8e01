"""``qaev search``: the options parsed into a :class:`~qaev.search.spec.RunSpec`, run by
:func:`qaev.runtime.search_run.run_search`."""
from __future__ import annotations

import functools
import time
from pathlib import Path

import click

from qaev.cli import notes, signals
from qaev.cli.data import data_source
from qaev.cli.helptext import GroupedCommand
from qaev.cli.options import bit_list, csv_list, data_options, nbits_accuracy_option
from qaev.cli.progress import legend_text, make_progress
from qaev.config_io import load_layer_settings
from qaev.evaluation.scoring import NEAR_Z
from qaev.evaluation.staging import Finish, Staging
from qaev.model.session import ORT_LEVELS
from qaev.runtime.parallel import check_run_options
from qaev.runtime.refining import REFINE_SHARE
from qaev.runtime.search_run import run_search
from qaev.search.objectives import OBJECTIVE_MODULES, constraints
from qaev.search.defaults import PRESETS
from qaev.search.spec import PREDICTOR_DEFAULT, EvalSettings, RunSpec, SearchSettings, SpaceSpec

__all__ = ["search", "SYMMETRY"]

SYMMETRY = {"symmetric": [True], "asymmetric": [False], "both": [True, False]}


def _size_cells(point: dict) -> str:
    sizes = point.get("sizes")
    if not sizes:
        return ""
    file = f"{sizes['file_mb']:>8.4f}" if sizes.get("file_mb") is not None else f"{'-':>8}"
    return f"  {sizes['bit_count_mb']:>10.4f}  {file}  {sizes['x_smaller']:>8.2f}x"


def _validation_cell(point: dict) -> str:
    checked = point.get("validation")
    if checked is None:
        return f"  {'-':>14}"
    se = f" ± {checked['se']:.2f}" if checked.get("se") is not None else ""
    return f"  {checked['acc_drop']:>7.2f}{se:<7}"


def _print_front(doc: dict) -> None:
    names = [o["name"] for o in doc["objectives"]]
    kinds = {o["name"]: o["kind"] for o in doc["objectives"]}
    header = "  ".join(f"{n + (' (est.)' if kinds[n] == 'estimated' else ''):>18}" for n in names)
    sized = any("sizes" in p for p in doc["points"])
    sizes = f"  {'MB by bits':>10}  {'file MB':>8}  {'smaller':>9}" if sized else ""
    checked = any("validation" in p for p in doc["points"])
    if checked:
        sizes += f"  {'val. drop':>14}"
    click.echo(f"\nPareto front: {len(doc['points'])} points "
               f"({doc['metric']} measured on {doc['float'].get('n', '?')} samples; "
               f"float {doc['float']['metric']:.2f})")
    click.echo(f"  id  {header}  {doc['metric']:>8}{sizes}")
    recommended = (doc.get("recommended") or {}).get("id")
    rebuilt = (doc.get("recommended") or {}).get("refined")
    for p in doc["points"]:
        values = "  ".join(f"{p['objectives'][n]:>18.4f}" for n in names)
        metric = f"{p['metric']:8.2f}" if p["metric"] is not None else "       -"
        ships = f" (ships rebuilt: {rebuilt})" if rebuilt else ""
        mark = ("  near" if p.get("near") else "") + (f"  <- recommended{ships}" if p["id"] == recommended else "")
        val = _validation_cell(p) if checked else ""
        click.echo(f"  {p['id']}  {values}  {metric}{_size_cells(p)}{val}{mark}")
    if sized:
        click.echo("  MB by bits: weights at their bit widths (scales, zero points, other initializers included; "
                   "= size_mb); file MB: the exported .onnx; smaller: float MB by bits / the point's")
    if any(p.get("near") for p in doc["points"]):
        click.echo("  near: a smaller point measured better, by less than this point's standard error: kept as a "
                   "fallback the measurement cannot tell from the front")
    if checked:
        click.echo("  val. drop: on the validation split the recommended point is chosen on, ± its paired standard "
                   "error against float on the same items")


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _next_steps(out: Path, recommended: dict) -> None:
    """What to run next on the recommended point: export it, or first rebuild it with block
    reconstruction where PyTorch is installed and the run did not."""
    chosen = recommended["id"]
    click.echo(f"next: qaev export {out} --point recommended -o model.onnx"
               + (f"  (writes {recommended['refined']})" if recommended.get("refined") else ""))
    if _has_torch() and not recommended.get("refined"):
        click.echo(f"  or: qaev refine {out} --recommended  (rebuilds {chosen} with block reconstruction, learned "
                   f"rounding: minutes; measures it again), then qaev export {out} --point {chosen}r -o model.onnx")


def constraint_options(func):
    """One ``--max-...`` option per objective of the registry (its bound)."""
    options = [click.option(f"--{o.constraint.replace('_', '-')}", o.constraint, type=float, default=None,
                            show_default="1.0 metric points; 0.5 for spearman" if o.constraint == "max_drop"
                            else "none",
                            help=f"Constraint: {o.help}.") for o in constraints().values()]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


_BIAS = {"off": (False,), "on": (True,), "both": (False, True)}


def space_spec(*, w_bits=None, acts=None, granularity=None, calibrations=None, exclude=(), roundings=None,
               bias_correction=None, weight_range=None, symmetry=None, freeze=None, nbits_accuracy=0) -> SpaceSpec:
    """The search space of the CLI's text options; an option not given stays unset (None)
    and the preset's default for the model's family fills it when the problem is built."""
    frozen = ({selector: cfg.to_dict() for selector, cfg in load_layer_settings(freeze).items()}
              if freeze is not None else None)
    given = lambda text, parse: None if text is None else tuple(parse(text))  # noqa: E731
    return SpaceSpec(w_bits=given(w_bits, bit_list), acts=given(acts, csv_list),
                     granularities=given(granularity, csv_list), calibrations=given(calibrations, csv_list),
                     exclude=tuple(exclude) if exclude else None, roundings=given(roundings, csv_list),
                     bias_corrections=None if bias_correction is None else _BIAS[bias_correction],
                     weight_range=weight_range, symmetric=None if symmetry is None else tuple(SYMMETRY[symmetry]),
                     frozen=frozen, scale_rules=None, nbits_accuracy=nbits_accuracy)


def _space_options(func):
    auto = " [default: from --preset and the model's family]"
    options = [
        click.option("--preset", type=click.Choice(list(PRESETS)), default="size", show_default=True,
                     help="The goal whose measured defaults fill every space option not given: "
                          + "; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values()) + "."),
        click.option("--w-bits", default=None, help="Allowed weight bits (comma list; float allowed)." + auto),
        click.option("--acts", default=None, help="Allowed activations: a4,a8,a16,dyn8,float." + auto),
        click.option("--granularity", default=None,
                     help="Allowed: per_tensor,per_channel,block32,block64,block128." + auto),
        click.option("--calibrations", default=None, help="Allowed: minmax,percentile,entropy,mse." + auto),
        click.option("--roundings", default=None,
                     help="Allowed weight roundings: nearest,gptq,codebook (gptq: second-order, data-aware; "
                          "codebook: 2-bit embedding tables as 256 learned 4-weight vectors)." + auto),
        click.option("--bias-correction", type=click.Choice(list(_BIAS)), default=None,
                     help="Bias correction on every layer, off, or searched per layer." + auto),
        click.option("--weight-range", type=click.Choice(["minmax", "mse"]), default=None,
                     help="Weight grid range per scale group for every layer: min/max, or clipped to the least "
                          "squared error." + auto),
        click.option("--symmetry", type=click.Choice(list(SYMMETRY)), default=None,
                     help="Weight grids: symmetric (2^b - 1 levels, zero point 0), asymmetric (all 2^b levels and "
                          "a zero point per scale group), or searched per layer." + auto),
        nbits_accuracy_option,
        click.option("--exclude", multiple=True, show_default="none",
                     help="Keep these layers float (name or re:REGEX); repeatable."),
        click.option("--freeze", type=click.Path(path_type=Path), default=None, show_default="none",
                     help="YAML/JSON file mapping layer selectors (name or re:REGEX) to fixed settings, e.g. "
                          "'re:word_embeddings: {w_bits: 2, act: float, rounding: codebook}'; those layers are not "
                          "searched."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


def _run_options(func):
    options = [
        click.option("--out", type=click.Path(path_type=Path), default=None, show_default="runs/search-<time>",
                     help="Run directory."),
        click.option("--resume", is_flag=True, help="Continue the run in --out (settings must match)."),
        click.option("--force", is_flag=True, help="Overwrite a non-empty --out."),
        click.option("--workers", type=int, default=1, show_default=True,
                     help="Local worker processes (1 ORT thread each)."),
        click.option("--dask", "dask_address", default=None, show_default="none: local", metavar="ADDRESS",
                     help="Evaluate on a dask.distributed cluster at ADDRESS."),
        click.option("--timeout", type=float, default=None, show_default="none: no limit, in this process",
                     help="Seconds one evaluation may take (runs evaluations in worker processes)."),
        click.option("--ort-level", type=click.Choice(ORT_LEVELS), default="extended", show_default=True,
                     help="ONNX Runtime optimisation level of every session (accuracy shifts by tenths between levels; "
                          "disable: Q/DQ evaluated in float)."),
        click.option("--staged", type=click.Choice([f.value for f in Finish]), is_flag=False, flag_value="race",
                     default=None, show_default="off: every candidate on all the data",
                     help="Race candidates over 1/8, 1/4, 1/2 of the data and finish only those that can reach the "
                          "front: on arrival (--staged or --staged race), or search on the first 1/8 and finish the "
                          "promising ones at the end (--staged end)."),
        click.option("--screen-on", type=click.Choice(["auto", "simulator", "model"]), default="auto",
                     show_default=True,
                     help="With --staged end: screen candidates on one float graph standing in for every QDQ model "
                          "(simulator), on each candidate's own QDQ model, or auto: the simulator for small models. "
                          "Finishing always measures each candidate's own model."),
        click.option("--sensitivity", "sensitivity_spec", default="noise", show_default=True,
                     metavar="noise[:N] | FILE | none",
                     help="Seed half of the first population along the greedy lowering path over a per-layer "
                          "sensitivity: `noise` probes each layer alone at each lower width on N (default 32) "
                          "unlabelled samples (their time counts in the run's); FILE is a `qaev sensitivity --out` "
                          "table of measured drops; `none`: the free weight-error proxy seeds 30%."),
        click.option("--predictor/--no-predictor", default=PREDICTOR_DEFAULT, show_default=True,
                     help="Let a model of the drop, refitted on every measured candidate, choose each generation's "
                          "offspring among many made (those it predicts could reach the front, then the most "
                          "uncertain); its rank correlation with the measured drops goes into history.jsonl."),
        click.option("--refine/--no-refine", default=None,
                     show_default="on with --time where PyTorch is installed, else off",
                     help="Rebuild the recommended point with block reconstruction at the end (learned rounding; "
                          f"with --time, in up to {REFINE_SHARE:.0%} of the budget, kept from the start, and "
                          "whatever the end's re-measuring leaves; measured on the validation split); front.json's "
                          "`recommended.refined` names the rebuilt point unless it measured worse on the validation "
                          "split, and `qaev export RUN --point recommended` writes it."),
        click.option("--near", type=click.FloatRange(min=0), default=NEAR_Z, show_default=True, metavar="Z",
                     help="The front also keeps the points it beats by less than Z standard errors of their drop "
                          "(at most as many as it has; re-measured and validated like the front, so the choice on "
                          "the validation split can fall back on them; each costs one re-measuring); 0: the "
                          "non-dominated points alone."),
        click.option("--quiet", is_flag=True, help="Print only the final summary line."),
        click.option("--json-progress", is_flag=True,
                     help="One JSON object per generation on stdout instead of the bar."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


def _warnings_at_begin(progress) -> None:
    """Print the warnings held while loading when the search proper begins."""
    begin = progress.begin

    def begin_with_warnings(text: str) -> None:
        notes.flush()
        begin(text)

    progress.begin = begin_with_warnings


#: ``qaev search --help``'s headings and the options under each.
SECTIONS = (
    ("Model and data", ("problem", "task", "data", "calib", "eval_n", "seed", "metric", "shapes")),
    ("Image preprocessing (--task imagenet)", ("size", "crop_pct", "mean", "std", "resample")),
    ("Goal: objectives and constraints", ("preset", "objectives", "hardware", *constraints(), "validation")),
    ("Search space", ("w_bits", "acts", "granularity", "calibrations", "roundings", "bias_correction", "weight_range",
                      "symmetry", "nbits_accuracy", "exclude", "freeze")),
    ("Search", ("algorithm", "pop", "generations", "time_minutes", "sensitivity_spec", "predictor", "staged",
                "screen_on", "refine", "near")),
    ("Evaluation", ("ort_level", "workers", "dask_address", "timeout")),
    ("Run directory and output", ("out", "resume", "force", "quiet", "json_progress")),
)


@click.command(cls=GroupedCommand, sections=SECTIONS,
               epilog=f"The progress line: {legend_text()}.")
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--problem", default=None, show_default="digits without MODEL",
              help="A ready-made problem (see `qaev problems`).")
@data_options
@click.option("--hardware", default=None, show_default="the preset's, if any",
              help="Target table name or YAML path (for estimated objectives).")
@click.option("--objectives", default=None, show_default="the preset's, else acc_drop,size_mb",
              help=f"Comma-separated, from {', '.join(OBJECTIVE_MODULES)}.")
@constraint_options
@click.option("--algorithm", type=click.Choice(["auto", "nsga2", "nsga3"]), default="auto", show_default=True,
              help="NSGA-II, NSGA-III, or auto: NSGA-II up to three objectives, NSGA-III from four on.")
@click.option("--pop", type=int, default=20, show_default=True, help="Population size.")
@click.option("--generations", type=int, default=None, show_default="10; with --time, as many as the time allows",
              help="Generations to run.")
@click.option("--time", "time_minutes", type=float, default=None, metavar="MINUTES", show_default="no limit",
              help="Wall-time budget of the whole run (loading, calibration and probes included): stop starting "
                   "candidates in time to finish the one running, re-measure the front (and rebuild the "
                   "recommended point); front.json is written after every generation, and the run ends with the "
                   "time each phase took.")
@click.option("--validation", type=float, default=0.25, show_default=True,
              help="Share of the evaluation split set apart (seeded) to choose the recommended point on, when the "
                   "problem has no validation split of its own (0: none).")
@_space_options
@_run_options
def search(model, problem, hardware, objectives, algorithm, pop, generations, time_minutes, validation, out, resume,
           force, workers, dask_address, timeout, ort_level, staged, screen_on, sensitivity_spec, predictor, refine,
           near, quiet, json_progress, **kwargs) -> None:
    """Search per-layer quantization; write the Pareto front to a run directory.

    The front is re-measured on the exported models; `recommended` in front.json is the
    smallest point within --max-drop (default 1.0 metric points, 0.5 for Spearman) on the
    validation split and on the search split."""
    check_run_options(workers=workers, timeout=timeout)
    if refine is None:
        refine = time_minutes is not None and _has_torch()
    if generations is None:
        generations = 10_000 if time_minutes is not None else 10
    preset = PRESETS[kwargs.pop("preset")]
    objectives = objectives or ",".join(preset.objectives or ("acc_drop", "size_mb"))
    hardware = hardware or preset.hardware
    progress = make_progress("json" if json_progress else "quiet" if quiet else "bar", total_generations=generations,
                             objectives=csv_list(objectives))
    click.get_current_context().call_on_close(progress.close)
    _warnings_at_begin(progress)
    budget = f"{generations} generations" if time_minutes is None else f"generations within {time_minutes:g} min"
    progress.start(f"qaev search: pop {pop} x {budget}; loading the model and calibrating ...")
    bounds = {name: kwargs.pop(name) for name in constraints()}
    space = space_spec(**{k: kwargs.pop(k) for k in ("w_bits", "acts", "granularity", "calibrations", "exclude",
                                                     "roundings", "bias_correction", "weight_range", "symmetry",
                                                     "freeze", "nbits_accuracy")})
    seed = kwargs["seed"]
    source, metric = data_source(model, problem, kwargs)
    simulate = {"auto": None, "simulator": True, "model": False}[screen_on]
    spec = RunSpec(source=source, space=space, objectives=tuple(csv_list(objectives)), hardware=hardware,
                   constraints={k: v for k, v in bounds.items() if v is not None},
                   evaluation=EvalSettings(metric=metric, ort_level=ort_level, validation=validation,
                                           staging=Staging(finish=staged, simulate=simulate) if staged else None),
                   search=SearchSettings(algorithm=algorithm, pop=pop, generations=generations, seed=seed,
                                         sensitivity=None if sensitivity_spec == "none" else sensitivity_spec,
                                         time_minutes=time_minutes, predictor=predictor, refine=refine, near=near),
                   preset=preset.name)
    out = out or Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    outcome = run_search(spec, out=out, progress=progress, resume=resume, force=force, workers=workers,
                         dask=dask_address, timeout=timeout)
    doc, store = outcome.doc, outcome.problem.store
    progress.close()
    if progress.mode == "bar":
        _print_front(doc)
    progress.finish(f"wrote {out / 'front.json'} ({len(doc['points'])} points, {len(store)} evaluations)",
                    front=str(out / "front.json"), points=len(doc["points"]), evaluations=len(store))
    if progress.mode == "bar" and doc.get("recommended") and not outcome.interrupted:
        _next_steps(out, doc["recommended"])
    if outcome.interrupted:
        click.echo(f"qaev: interrupted; the front of the {len(store)} finished evaluations is written; "
                   f"continue with --out {out} --resume", err=True)
        raise click.exceptions.Exit(signals.exit_code())
