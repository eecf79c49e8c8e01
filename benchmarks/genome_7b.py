"""The search machinery at LLaMA-7B's scale: 226 layers, an analytic metric, the tables' estimates.

    python benchmarks/genome_7b.py [--hardware arm_dot] [--pop 100] [--generations 100]
        [--seed 0] [--out runs/llama7b] [--points 6]

LLaMA-7B's layer structure (:data:`qaev.model.shapes.LLAMA_7B`: embedding, 32 blocks of 7
projections, LM head; shapes of the real model, one token a sample, i.e. a decoding step)
is searched with NSGA-II and qaev's operators (:class:`qaev.search.analytic.AnalyticProblem`):
objectives an analytic drop (:func:`qaev.search.analytic.noise_drop`, a noise model, not a
measurement; down_proj and the LM head weighted x2, the embedding x0.5), the exact size by
bit count and the estimated decode latency on ``--hardware``, every candidate priced as
exported with ``--nbits-accuracy 4`` (block-wise weight-only projections of <= 4 bits as
``MatMulNBits``, on the tables that model it; ``--nbits-accuracy 0`` prices them as QDQ
weights dequantized every run). Prints where the time went:
the metric function, sizes and estimates, and everything else (sampling, crossover,
mutation, repair, duplicate elimination, decoding, survival) -- the search machinery is all
but the metric. Then writes a run directory (front.json with the layer list, configs) and
``qaev report``'s pictures, and a table, every figure an estimate, of a 7B model's size and
decode latency on every hardware table at ``--points`` configurations of the front spread by
size, and at its fastest point on ``--hardware`` with an analytic drop of at most 1.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from pymoo.optimize import minimize as pymoo_minimize

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig
from qaev.hardware import list_tables, load_table
from qaev.model.shapes import LLAMA_7B, decoder_layers, decoder_other_bytes, layers_to_json
from qaev.quantize.sizes import estimate_cost, model_bytes
from qaev.search.analytic import ANALYTIC_UNIT, AnalyticProblem, noise_drop
from qaev.search.optimize import make_algorithm
from qaev.search.space import SearchSpace

OBJECTIVES = ("acc_drop", "size_mb", "est_latency_ms")


def build(hardware: str, nbits_accuracy: int = 4) -> AnalyticProblem:
    """The 7B-shaped problem on ``hardware``."""
    layers = decoder_layers(LLAMA_7B, tokens=1)
    weights = {layer.name: 2.0 for layer in layers if layer.name.endswith("down_proj") or layer.name == "lm_head"}
    weights["model.embed_tokens"] = 0.5
    space = SearchSpace(layers=layers, w_bits=(2, 3, 4, 8, None), acts=("float", "dyn8"),
                        granularities=(Granularity("block32"), Granularity("block128"), Granularity.PER_CHANNEL),
                        symmetric=(True, False), roundings=("gptq", "nearest", "codebook"),
                        nbits_accuracy=nbits_accuracy)
    return AnalyticProblem(layers, metric=noise_drop(layers, weights=weights), space=space, objectives=OBJECTIVES,
                           table=load_table(hardware), other_bytes=decoder_other_bytes(LLAMA_7B))


def search(problem: AnalyticProblem, *, pop: int, generations: int, seed: int) -> dict:
    """Run NSGA-II; seconds in all, in the metric, in sizes and estimates, and the rest."""
    algorithm = make_algorithm(problem, pop_size=pop, predictor=False)
    start, cpu = time.perf_counter(), time.process_time()
    pymoo_minimize(problem, algorithm, ("n_gen", generations), seed=seed, copy_algorithm=True)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    front_start = time.perf_counter()
    front = problem.front()
    front_s = time.perf_counter() - front_start
    return {"wall_s": wall + front_s, "cpu_s": cpu, "metric_s": problem.metric_s, "objectives_s": problem.cost_s,
            "front_s": front_s, "machinery_s": wall + front_s - problem.metric_s, "evaluated": len(problem.records),
            "front": front}


def write_run(problem: AnalyticProblem, front, out: Path, *, seed: int) -> float:
    """front.json (the layer list included) and configs; ``qaev report``'s files; seconds."""
    from qaev.report import write_report
    from qaev.runtime.rundir import write_front

    start = time.perf_counter()
    layers = layers_to_json(problem.quantizer.layers)
    sha = hashlib.sha256(json.dumps(layers, sort_keys=True).encode()).hexdigest()
    labels = [{"name": "acc_drop", "kind": "estimated", "unit": ANALYTIC_UNIT},
              {"name": "size_mb", "kind": "exact", "unit": "MB of weights incl. scales and zero points"},
              {"name": "est_latency_ms", "kind": "estimated", "unit": "ms per decoded token (analytic roofline)"}]
    out.mkdir(parents=True, exist_ok=True)
    write_front(out, front, objectives=OBJECTIVES, model_path=None, model_sha256=f"layer-list:{sha}",
                float_values={"metric": 0.0, **problem.float_objectives()}, metric="analytic noise drop",
                evaluations=len(problem.records), seed=seed,
                extra={"hardware": problem.table.name, "objectives": labels, "layers": layers,
                       "other_bytes": problem.other_bytes, "model_name": "LLaMA-7B layer list (no weights)"})
    write_report(out)
    return time.perf_counter() - start


def spread(front, n: int) -> list:
    """``n`` points of the front evenly spaced by size, smallest and largest included."""
    ordered = sorted(front, key=lambda r: r.objectives["size_mb"])
    picks = np.unique(np.round(np.linspace(0, len(ordered) - 1, min(n, len(ordered)))).astype(int))
    return [ordered[i] for i in picks]


def fastest(front, drop: float = 1.0) -> list:
    """The front's fastest point on the searched table among those whose analytic drop is at
    most ``drop`` (none when no point is)."""
    within = [r for r in front if r.objectives["acc_drop"] <= drop]
    return [min(within, key=lambda r: r.objectives["est_latency_ms"])] if within else []


def uniform_w4(problem: AnalyticProblem) -> QuantConfig:
    """Every layer 4-bit block 32, weight-only, at the problem's MatMulNBits level: a reference row."""
    cfg = LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity("block32"))
    return QuantConfig(layers={layer.name: cfg for layer in problem.quantizer.layers},
                       nbits_accuracy=problem.space.nbits_accuracy)


def table_7b(problem: AnalyticProblem, points) -> list[dict]:
    """Size (exact by bit count) and estimated decode latency per token on every table: float,
    uniform 4-bit block 32 (``w4 b32``), and each of ``points``."""
    layers = problem.quantizer.layers
    rows = []
    references = [("float", QuantConfig()), ("w4 b32", uniform_w4(problem))]
    for label, config in references + [(r.key[:8], QuantConfig.from_dict(r.config)) for r in points]:
        row = {"point": label, "size_gb": model_bytes(layers, config, problem.other_bytes) / 1e9,
               "analytic_drop": problem.metric(config), "est_ms_per_token": {}}
        for name in list_tables():
            row["est_ms_per_token"][name] = estimate_cost(layers, config, load_table(name)).est_latency_ms
        rows.append(row)
    return rows


def _print_table(rows: list[dict]) -> None:
    tables = list(rows[0]["est_ms_per_token"])
    print("LLaMA-7B at the front's configurations: size by bit count (exact) and decode latency per token "
          "(ESTIMATES from the hardware tables, batch 1, weights read once per token)")
    print(f"{'point':10s} {'GB':>7s} {'drop*':>6s}" + "".join(f" {t[:16]:>16s}" for t in tables))
    for row in rows:
        cells = "".join(f" {row['est_ms_per_token'][t]:13.2f} ms" for t in tables)
        print(f"{row['point']:10s} {row['size_gb']:7.2f} {row['analytic_drop']:6.2f}{cells}")
    print("drop*: the analytic noise model's value, not a measurement")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hardware", default="arm_dot")
    parser.add_argument("--pop", type=int, default=100)
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/llama7b"))
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--nbits-accuracy", type=int, default=4, choices=range(5))
    args = parser.parse_args(argv)
    print(f"command: python benchmarks/genome_7b.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"python {platform.python_version()}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} "
          "at start; one process")
    problem = build(args.hardware, args.nbits_accuracy)
    print(f"{len(problem.quantizer.layers)} layers ({LLAMA_7B.parameters / 1e9:.2f} B parameters), "
          f"{problem.space.n_var} genes; {args.pop} candidates x {args.generations} generations on {args.hardware}; "
          f"priced with nbits_accuracy {args.nbits_accuracy}")
    timing = search(problem, pop=args.pop, generations=args.generations, seed=args.seed)
    report_s = write_run(problem, timing["front"], args.out, seed=args.seed)
    print(f"search: {timing['wall_s']:.1f} s wall ({timing['cpu_s']:.1f} s CPU), {timing['evaluated']} distinct "
          f"configs evaluated, front of {len(timing['front'])}")
    print(f"  analytic metric {timing['metric_s']:.1f} s; exact sizes and table estimates "
          f"{timing['objectives_s']:.1f} s; front {timing['front_s']:.2f} s")
    print(f"  search machinery (all but the metric): {timing['machinery_s']:.1f} s")
    print(f"front.json, configs and report (pareto.png, bitmap.png, report.html) in {args.out}: {report_s:.1f} s")
    rows = table_7b(problem, spread(timing["front"], args.points) + fastest(timing["front"]))
    _print_table(rows)
    return {**{k: v for k, v in timing.items() if k != "front"}, "front_size": len(timing["front"]),
            "report_s": report_s, "table": rows}


if __name__ == "__main__":
    main()
