"""Fidelity of the ``host`` cost table: estimated vs measured latency of many configs.

    python benchmarks/cost_model_fidelity.py [--problem efficientnet-lite0|digits] [--model M.onnx]
        [--configs 24] [--batch 1] [--repeats 15] [--threads 1] [--seed 0] [--graph export|eval]
        [--hardware host] [--compare TABLE ...] [--json OUT]

Builds ``--configs`` distinct configs of one model (uniform float, W8A8, W4A8, weight-only
8/4, dynamic int8, 8- and 16-bit weights with 16-bit activations, 2-bit weights, then
seeded random per-layer mixes over w_bits 2/4/8/16/float and activations a8/a16/dyn8/float,
each with its own share of W8A8 layers so that the set spans float to all-integer latency:
see :func:`qaev.hostfit.fit.fidelity_configs`),
measures each one's host latency with ONNX Runtime (median of ``--repeats`` rounds after
warm-up; the configs are interleaved within every round, in a shuffled order, so background
load biases all of them alike; one fixed input batch and thread count) and computes the
``host`` table's ``est_latency_ms`` for each. Prints one row per config and the Spearman
rank correlation between the two columns (and, with ``--compare``, that of other tables on
the same measurements), with the command, machine, ONNX Runtime version and date. Every
figure printed is measured (or estimated) in that run. The ``host`` table's whole-model
refit (``python -m qaev.hostfit.fit --whole-model``) uses mixes of another seed and
leaves out every config of this set.

The measured model is, by default, the exported file a user ships (``--graph export``:
native INT4 weights, what the ``host`` table models); ``--graph eval`` measures the search's
evaluation graph instead (sub-byte weights in INT8 containers, so 4-bit layers run int8).

The input is standard normal noise (latency does not depend on the values); the static
activation ranges are calibrated on the same kind of noise. Without ``--model`` the model
is EfficientNet-Lite0 when the problem suite has it, else the bundled digits CNN.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import statistics
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
from scipy.stats import spearmanr

from qaev.evaluation.latency import cpu_name
from qaev.files import write_atomic
from qaev.hardware import load_table
from qaev.quantize.sizes import estimate_cost
from qaev.hostfit.timing import (
    fidelity_configs,
    noise_quantizer,
    random_feed,
    resolve_model,
    time_interleaved,
    timed_model,
)

__all__ = ["main", "run", "machine_description"]

SCRIPT = "benchmarks/cost_model_fidelity.py"


def machine_description() -> str:
    """CPU model (:func:`~qaev.evaluation.latency.cpu_name`), architecture, logical cores,
    OS and Python of this host."""
    return (f"{cpu_name()} ({platform.machine()}), {os.cpu_count()} logical cores, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}")


def _pairs_summary(report) -> str:
    """Executed pairs of a cost report, most layers first (e.g. ``w8a8:30 wfloatafloat:20``)."""
    counts = Counter(row.executed for row in report.rows)
    return " ".join(f"{pair}:{n}" for pair, n in counts.most_common())


def run(args: argparse.Namespace) -> dict:
    """Build, measure and estimate every config; returns the JSON-ready result."""
    float_model, source = resolve_model(args.problem, args.model)
    feed = random_feed(float_model, args.batch, args.seed)
    quantizer = noise_quantizer(float_model, batch=args.batch, seed=args.seed + 1, threads=args.threads)
    layers = quantizer.layers
    configs = fidelity_configs(layers, args.configs, seed=args.seed)
    table = load_table(args.hardware)
    models, graphs = [], []
    for _, config in configs:
        model, graph = timed_model(quantizer, config, args.graph)
        models.append(model)
        graphs.append(graph)
    samples = time_interleaved(models, feed, repeats=args.repeats, warmup=3, threads=args.threads, seed=args.seed)
    rows = []
    for (label, config), graph, times in zip(configs, graphs, samples):
        report = estimate_cost(layers, config, table, batch=args.batch)
        q1, q3 = np.percentile(times, [25, 75])
        rows.append({"label": label, "key": config.key(), "graph": graph, "measured_ms": statistics.median(times),
                     "measured_iqr_ms": float(q3 - q1), "est_latency_ms": report.est_latency_ms,
                     "size_mb": report.size_mb, "executed": _pairs_summary(report)})
    measured = [r["measured_ms"] for r in rows]
    estimated = [r["est_latency_ms"] for r in rows]
    rho = float(spearmanr(measured, estimated).statistic) if len(rows) > 2 else float("nan")
    others = {}
    for other in args.compare:
        est = [estimate_cost(layers, config, load_table(other), batch=args.batch).est_latency_ms
               for _, config in configs]
        others[str(other)] = float(spearmanr(measured, est).statistic)
    return {
        "command": args.command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_description(),
        "onnxruntime": ort.__version__,
        "model": source,
        "layers": len(layers),
        "graph": args.graph,
        "hardware": table.name,
        "batch": args.batch,
        "repeats": args.repeats,
        "threads": args.threads,
        "seed": args.seed,
        "rows": rows,
        "spearman": rho,
        "spearman_other_tables": others,
    }


def _print(result: dict) -> None:
    print(f"$ {result['command']}")
    print(f"date: {result['date']}")
    print(f"machine: {result['machine']}")
    print(f"onnxruntime {result['onnxruntime']}  threads {result['threads']}  batch {result['batch']}  "
          f"repeats {result['repeats']} (interleaved, median)  seed {result['seed']}")
    print(f"model: {result['model']}  ({result['layers']} layers, {result['graph']} graph)  "
          f"estimate: '{result['hardware']}' table")
    print()
    width = max(len(r["label"]) for r in result["rows"])
    print(f"{'config':<{width + 1}}  {'measured ms':>11}  {'IQR ms':>7}  {'est ms':>8}  {'est/meas':>8}  "
          f"{'size MB':>8}  executed pairs (layers)")
    for r in result["rows"]:
        ratio = r["est_latency_ms"] / r["measured_ms"] if r["measured_ms"] > 0 else math.nan
        flag = "" if r["graph"] == result["graph"] else "*"
        print(f"{r['label'] + flag:<{width + 1}}  {r['measured_ms']:11.3f}  {r['measured_iqr_ms']:7.3f}  "
              f"{r['est_latency_ms']:8.3f}  {ratio:8.2f}  {r['size_mb']:8.4f}  {r['executed']}")
    flagged = [r for r in result["rows"] if r["graph"] != result["graph"]]
    if flagged:
        print(f"* {len(flagged)} config(s) measured on another graph: {flagged[0]['graph']}")
    print()
    print(f"Spearman rank correlation (est_latency_ms vs measured), {len(result['rows'])} configs: "
          f"{result['spearman']:.3f}")
    for other, rho in result["spearman_other_tables"].items():
        print(f"  same measurements, estimated with {other}: {rho:.3f}")


def main(argv=None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", choices=("efficientnet-lite0", "digits"), default="efficientnet-lite0")
    parser.add_argument("--model", help="an ONNX file to measure instead of the problem's model")
    parser.add_argument("--configs", type=int, default=24, help="number of distinct configs (at least 3)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per config")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra-op threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random mixes, input and round order")
    parser.add_argument("--graph", choices=("export", "eval"), default="export",
                        help="measure the exported file (default) or the evaluation graph")
    parser.add_argument("--hardware", default="host", help="cost table to compare with (name or YAML path)")
    parser.add_argument("--compare", nargs="*", default=[], metavar="TABLE",
                        help="also print the Spearman of these tables (names or YAML paths) on the same measurements")
    parser.add_argument("--json", type=Path, help="also write the result here")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.configs < 3 or args.batch < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--configs must be at least 3; --batch, --repeats and --threads at least 1")
    args.command = " ".join(["python", SCRIPT, *map(shlex.quote, argv)])
    result = run(args)
    _print(result)
    if args.json:
        write_atomic(args.json, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
