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
import io
import json
import logging
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

logging.basicConfig(level=logging.WARNING)  # before ORT's tools configure the root logger at INFO
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the comparison package beside this script

from qaev.cli.options import bit_list, csv_list  # noqa: E402
from qaev.cli.search import SYMMETRY  # noqa: E402
from qaev.evaluation.latency import cpu_name  # noqa: E402
from qaev.files import write_atomic  # noqa: E402
from qaev.runtime.search_run import default_tolerance  # noqa: E402
from qaev.search.objectives import get_objective  # noqa: E402
from qaev.search.width_rows import weight_only_act  # noqa: E402

from comparison.methods import METHODS, TIMED, run_method  # noqa: E402
from comparison.readings import summarise  # noqa: E402
from comparison.splits import Setup, build_setup, per_evaluation_s  # noqa: E402
from comparison.tables import print_seeds, print_table, print_tolerance, print_within, tolerance_figures  # noqa: E402


def code_version() -> dict:
    """qaev's version and the commit of the checkout this script runs from (None outside a
    git checkout), and whether tracked files differ from it, so runs of other code can be
    told apart in a seeds summary."""
    import subprocess

    from qaev import __version__

    here = str(Path(__file__).resolve().parent)

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", here, *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short=12", "HEAD")
    changed = None if commit is None else bool(git("status", "--porcelain", "--untracked-files=no"))
    return {"qaev": __version__, "commit": commit, "changed": changed}


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
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu": cpu_name(), "cpus": os.cpu_count()},
        "code": code_version(),
        "kinds": {"acc_drop / metric": "measured with ONNX Runtime (search and test splits)",
                  "size_mb": "exact bit count (ORT tools: bytes of the file's initializers)",
                  "est_latency_ms / est_energy_mj": "estimated from the hardware table (ORT tools: from the nearest "
                  "qaev config)", "host_latency_ms": "measured on this host", "hypervolume": "computed from the above",
                  "wall_s": "measured"},
    }


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


def _parser() -> argparse.ArgumentParser:
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
    return parser


def _tolerance_figures(doc: dict, args) -> dict:
    """:func:`tolerance_figures` at ``--tolerance``, default the one ``qaev search`` recommends
    within for the run's metric."""
    metric = doc["env"]["metric"]
    return tolerance_figures(doc, default_tolerance(metric) if args.tolerance is None else args.tolerance)


def _print_tables(doc: dict, args, figures: dict) -> None:
    """The tables of a run (its compare.json), with its within-tolerance ``figures``."""
    print_table(doc)
    print_tolerance(figures)
    if "size_mb" in doc["env"]["objectives"]:
        print_within(doc, _floats(args.within))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.seeds:
        print_seeds([json.loads(path.read_text()) for path in args.seeds], args.tolerance)
        return 0
    if args.from_json is not None:
        doc = json.loads(args.from_json.read_text())
        _print_tables(doc, args, _tolerance_figures(doc, args))
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
    results = _run_methods(setup, methods, args)
    doc = {"schema": "qaev.compare/1", "env": environment(setup, args, argv),
           **summarise(setup, results, size_x=_floats(args.size_x), latency_x=_floats(args.latency_x),
                       test_workers=args.test_workers)}
    doc["hypervolume"]["tolerance"] = _tolerance_figures(doc, args)
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "compare.json", json.dumps(doc, indent=1, default=str))
    plot(doc, args.out / "fronts.png")
    _print_tables(doc, args, doc["hypervolume"]["tolerance"])
    print(f"wrote {args.out / 'compare.json'} and {args.out / 'fronts.png'}")
    return 0


def _run_methods(setup: Setup, methods: list[str], args) -> list:
    """Each method in turn, each line printed as it ends (with ``--time``, each given that
    wall time, the baselines planning with the evaluations it affords)."""
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
    return results


if __name__ == "__main__":
    sys.exit(main())
