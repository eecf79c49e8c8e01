"""Choose a search's point again on more data than the search measured it on.

    python benchmarks/reselect.py RUN_DIR [--max-size-mb S] [--top K] [--test-all] [--export FILE.onnx] [--json FILE]

A search measures its candidates on its evaluation split (``qaev search --eval N`` of the
problem's search data); among many close candidates the best there is partly luck (the
winner's curse). This takes the ``K`` best fully measured candidates of the run directory
that fit the size bound (by the search's drop), measures each on all of the problem's
search data that calibration does not use (for MiniLM: every STS-B dev pair outside the
calibration pairs, the search's own included), chooses the best there, and measures that
one on the problem's test split, which neither the search nor the choice saw. With
``--test-all`` the other candidates' test figures are printed too, below the choice and
for information only. ``--export`` writes the chosen point's deployable file and measures
that file on test again. Every figure is measured in this run.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import onnxruntime as ort

from qaev.config import QuantConfig
from qaev.files import write_atomic
from qaev.evaluation.evaluator import Evaluator
from qaev.search.problem import QuantizationProblem
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, export_model


def candidates(run: Path, max_size_mb: float, top: int) -> list[dict]:
    """The ``top`` best fully measured records of ``run`` within ``max_size_mb``."""
    rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines() if line.strip()]
    ok = [r for r in rows if not r.get("error") and r.get("objectives", {}).get("acc_drop") is not None
          and not r.get("stage") and r["objectives"]["size_mb"] <= max_size_mb]
    return sorted(ok, key=lambda r: r["objectives"]["acc_drop"])[:top]


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a qaev search run directory")
    parser.add_argument("--max-size-mb", type=float, default=None, help="size bound (default: the run's own)")
    parser.add_argument("--top", type=int, default=10, help="candidates to re-measure")
    parser.add_argument("--test-all", action="store_true", help="also measure the others on test (information only)")
    parser.add_argument("--export", type=Path, default=None,
                        help="write the chosen point's file and measure it on test")
    parser.add_argument("--compact-names", action="store_true", help="with --export: short internal names in the file")
    parser.add_argument("--json", type=Path, default=None)
    return parser


def remeasured(problem: QuantizationProblem, records: list[dict], float_mb: float) -> list[dict]:
    """One row per record, in order: its model rebuilt and measured on all of ``problem``'s
    evaluation data (``wide_drop``) beside its search figures, each printed as it is measured."""
    rows = []
    for record in records:
        start = time.perf_counter()
        model = problem.quantizer.build(QuantConfig.from_dict(record["config"]))
        wide = problem.evaluator.drop(problem.evaluator.measure(model).value)
        rows.append({"key": record["key"], "size_mb": record["objectives"]["size_mb"],
                     "compression": float_mb / record["objectives"]["size_mb"],
                     "search_drop": record["objectives"]["acc_drop"], "wide_drop": wide, "model": model,
                     "config": record["config"]})
        print(f"  {record['key'][:12]}  {rows[-1]['compression']:6.2f}x  search drop {rows[-1]['search_drop']:+.2f}  "
              f"on all {len(problem.evaluator.data)}: {wide:+.2f}  ({time.perf_counter() - start:.0f} s)")
    return rows


def main(argv=None) -> dict:
    args = _parser().parse_args(argv)
    settings = json.loads((args.run / "settings.json").read_text())
    bound = args.max_size_mb if args.max_size_mb is not None else settings["constraints"].get("max_size_mb")
    if bound is None:
        sys.exit(f"{args.run}: the run has no size bound; give --max-size-mb")
    chosen_from = candidates(args.run, bound, args.top)
    if not chosen_from:
        sys.exit(f"{args.run}: no fully measured candidate within {bound} MB")
    name = settings["problem"]
    print(f"command: python benchmarks/reselect.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"onnxruntime {ort.__version__}; run {args.run} (problem {name}, search split {settings['eval']}); "
          f"{len(chosen_from)} candidates within {bound} MB; all figures measured in this run")
    parts = problem_parts(name, calib=settings["calib"], eval=None, seed=settings["seed"])  # eval: all but calib
    if parts.test is None:
        sys.exit(f"problem {name} has no test split of its own")
    problem = QuantizationProblem(Quantizer.calibrated(parts.model, parts.calib),
                                  Evaluator(parts.model, parts.eval, metric=parts.metric))
    test = Evaluator(parts.model, parts.test, metric=parts.metric)
    float_mb = problem.float_objectives()["size_mb"]
    print(f"re-measuring on {len(problem.evaluator.data)} search-data items "
          f"(float {problem.evaluator.float_value:.2f}); "
          f"test split {len(test.data)} items (float {test.float_value:.2f})")
    rows = remeasured(problem, chosen_from, float_mb)
    best = min(rows, key=lambda r: r["wide_drop"])
    best["test_drop"] = test.drop(test.measure(best["model"]).value)
    print(f"chosen: {best['key'][:12]}  {best['compression']:.2f}x  drop on the search data {best['wide_drop']:+.2f}, "
          f"on test {best['test_drop']:+.2f}")
    if args.export:
        write_atomic(args.export, export_model(problem.quantizer, QuantConfig.from_dict(best["config"]),
                                               compact=args.compact_names).SerializeToString())
        best["file_mb"] = args.export.stat().st_size / 1e6
        best["file_test_drop"] = test.drop(test.measure(args.export.read_bytes()).value)
        print(f"exported {args.export} ({best['file_mb']:.2f} MB): drop on test measured on the file "
              f"{best['file_test_drop']:+.2f}")
    by_search = rows[0]
    if args.test_all:
        print("for information only (not used to choose): test drops of every candidate")
        for row in rows:
            row.setdefault("test_drop", test.drop(test.measure(row["model"]).value))
            print(f"  {row['key'][:12]}  {row['compression']:6.2f}x  search {row['search_drop']:+.2f}  "
                  f"all {row['wide_drop']:+.2f}  test {row['test_drop']:+.2f}")
    doc = {"run": str(args.run), "problem": name, "bound_mb": bound, "onnxruntime": ort.__version__,
           "search_items": settings["eval"], "wide_items": len(problem.evaluator.data), "test_items": len(test.data),
           "chosen": best["key"], "chosen_by_search": by_search["key"],
           "rows": [{k: v for k, v in r.items() if k not in ("model", "config")} for r in rows]}
    if args.json:
        write_atomic(args.json, json.dumps(doc, indent=2) + "\n")
    return doc


if __name__ == "__main__":
    main()
