"""A search run's whole front read on the problem's test split: each point's drop on the
search, validation and test splits (the test drop with its paired standard error), whether
the front keeps it only as near (beaten by less than its drop's standard error on the
search split), and the within-tolerance hypervolume on test of what the run hands over
(the recommended point as it ships: rebuilt where the run rebuilt it) with and without the
near points.

    QAEV_DATA=../shared/data qaev search --problem efficientnet-lite0-heldout --time 20 --out R
    QAEV_DATA=../shared/data python benchmarks/front_on_test.py --problem efficientnet-lite0-heldout R

Points not yet exported are exported to ``R/models/`` first (``qaev export``). The test
split is the problem's (the 1300 held-out images of ``efficientnet-lite0-heldout``, the
STS-B test pairs of ``minilm-l6-stsb``), else its evaluation split. Nothing here is chosen
on the test readings; they say what the front's points are worth where no choice was made.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from qaev.cli.main import main as qaev
from qaev.evaluation.evaluator import Evaluator
from qaev.problems import problem_parts
from qaev.runtime.rundir import read_front
from qaev.runtime.search_run import default_tolerance
from qaev.search.front import tolerance_hypervolume


def shipped(doc: dict) -> list[dict]:
    """The points the run hands over: the front, the recommended point replaced by its
    rebuild where it ships rebuilt."""
    rebuilt = (doc.get("recommended") or {}).get("refined")
    refined = {r["id"]: r for r in doc.get("refined", [])}
    if not rebuilt or rebuilt not in refined:
        return list(doc["points"])
    source = doc["recommended"]["id"]
    return [p for p in doc["points"] if p["id"] != source] + [{**refined[rebuilt], "rebuilt_from": source}]


def read(run: Path, problem: str, *, seed: int = 0) -> dict:
    """Every shipped point measured on the test split, and the within-tolerance
    hypervolume of the points with and without the near ones."""
    doc = read_front(run)
    points, floats = shipped(doc), doc["float"]
    parts = problem_parts(problem, seed=seed)
    evaluator = Evaluator(parts.model, parts.test or parts.eval, metric=parts.metric)
    rows = []
    for p in points:
        path = run / "models" / f"{p['id']}.onnx"
        if not path.is_file():
            if qaev(["export", str(run), "--point", p["id"], "-o", str(path)]) != 0:
                raise SystemExit(f"{run}: point {p['id']} could not be exported")
        drop, se = evaluator.head_drop(evaluator.measure(onnx.load(path), keep_outputs=True).outputs)
        checked = p.get("validation") or p.get("measured", {}).get("validation") or {}  # a rebuild's: measured
        size = p["objectives"]["size_mb"]
        rows.append({"id": p["id"], "x_smaller": floats["sizes"]["bit_count_mb"] / size, "size_mb": size,
                     "search": p["objectives"]["acc_drop"], "validation": checked.get("acc_drop"), "test": drop,
                     "test_se": se, "near": bool(p.get("near")), "rebuilt_from": p.get("rebuilt_from")})
    tolerance = default_tolerance(doc["metric"])

    def within(chosen: list[dict]) -> float:
        F = np.array([[r["test"], r["size_mb"]] for r in chosen]).reshape(-1, 2)
        return tolerance_hypervolume(F, [1.0, floats["size_mb"]], drop=0, tolerance=tolerance)

    return {"run": str(run), "problem": problem, "tolerance": tolerance, "rows": rows,
            "recommended": doc.get("recommended"), "within_tolerance_hv": within(rows),
            "within_tolerance_hv_front_alone": within([r for r in rows if not r["near"]])}


def report(reading: dict) -> str:
    """The printed table."""
    lines = [f"{reading['run']} on {reading['problem']}'s test split (tolerance {reading['tolerance']:g}):",
             f"{'id':6s} {'x smaller':>9s} {'search':>7s} {'valid.':>7s} {'test':>13s}  note"]
    for r in reading["rows"]:
        val = "-" if r["validation"] is None else f"{r['validation']:.2f}"
        x = f"{r['x_smaller']:.2f}x"
        note = "near" if r["near"] else (f"rebuilt {r['rebuilt_from']}" if r["rebuilt_from"] else "")
        lines.append(f"{r['id']:6s} {x:>9s} {r['search']:7.2f} {val:>7s} {r['test']:7.2f} ± {r['test_se']:.2f}  {note}")
    lines.append(f"within-tolerance HV on test: {reading['within_tolerance_hv']:.4f} with the near points, "
                 f"{reading['within_tolerance_hv_front_alone']:.4f} without")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", required=True)
    parser.add_argument("--seed", type=int, default=0, help="the problem's data-split seed")
    parser.add_argument("--json", type=Path, default=None, help="also write the reading here")
    parser.add_argument("run", type=Path, help="a qaev search run directory")
    args = parser.parse_args(argv)
    reading = read(args.run, args.problem, seed=args.seed)
    print(report(reading), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(reading, indent=1) + "\n")


if __name__ == "__main__":
    main()
