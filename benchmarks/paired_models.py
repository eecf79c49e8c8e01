"""Exported models side by side on a problem's held-out split: each one's drop against the
float model with its paired standard error, its divergence from the float model's outputs
(KL of the softmax, millinats, for class scores), and each later model minus the first,
paired on the same items.

    python benchmarks/paired_models.py --problem efficientnet-lite0-heldout plain.onnx mirror.onnx searched.onnx

The split is the problem's test split where it has one (the 1300 held-out images of
``efficientnet-lite0-heldout``), else its evaluation split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

from qaev.evaluation.evaluator import Evaluator
from qaev.problems import problem_parts

sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder: learned_rounding's KL reading
from learned_rounding import kl_millinats  # noqa: E402


def rows(problem: str, paths: list[str], *, seed: int = 0) -> list[dict]:
    """One row per model: ``drop`` and ``se`` against float, ``kl`` (mean, or None), and for
    every model after the first ``gap``/``gap_se`` (its drop minus the first's, paired) and
    ``kl_gap``/``kl_gap_se``."""
    parts = problem_parts(problem, seed=seed)
    evaluator = Evaluator(parts.model, parts.test or parts.eval, metric=parts.metric)
    out, first = [], None
    for path in paths:
        outputs = evaluator.measure(onnx.load(path), keep_outputs=True).outputs
        drop, se = evaluator.head_drop(outputs)
        kl = kl_millinats(evaluator, outputs)
        row = {"model": path, "drop": drop, "se": se, "kl": None if kl is None else float(kl.mean())}
        if first is None:
            first = (outputs, kl)
        else:
            row["gap"], row["gap_se"] = evaluator.paired_gap(first[0], outputs)
            if kl is not None:
                d = kl - first[1]
                row["kl_gap"], row["kl_gap_se"] = float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))
        out.append(row)
    return out


def line(row: dict, first: str) -> str:
    """The printed reading of one row."""
    text = f"{row['model']}: drop {row['drop']:.2f} ± {row['se']:.2f}"
    text += f", KL {row['kl']:.1f}" if row["kl"] is not None else ""
    if "gap" in row:
        text += f"; minus {first}: {row['gap']:+.2f} ± {row['gap_se']:.2f}"
        text += f", KL {row['kl_gap']:+.1f} ± {row['kl_gap_se']:.1f}" if "kl_gap" in row else ""
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--problem", required=True)
    parser.add_argument("--seed", type=int, default=0, help="the problem's data-split seed")
    parser.add_argument("models", nargs="+", help="exported .onnx files; each later one is paired with the first")
    args = parser.parse_args(argv)
    found = rows(args.problem, args.models, seed=args.seed)
    for row in found:
        print(line(row, args.models[0]), flush=True)


if __name__ == "__main__":
    main()
