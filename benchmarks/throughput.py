"""Evaluation throughput, side by side on the same candidates and evaluation set.

    python benchmarks/throughput.py --problem digits [--candidates 24] [--eval N] [--search-gens 8]
        [--rows a,b,p,c,d[,e]] [--finish race|end] [--skip-rows] [--repeat N]

(a) naive: per candidate, ONNX Runtime's ``quantize_static`` with calibration on the
    calibration split, the candidate's quantized layers listed in ``nodes_to_quantize``
    and their weight widths passed as TensorQuantOverrides (INT4 for 2-4 bits, INT8 up to
    8, INT16 above; activations are the tool's 8-bit default, as it cannot leave them
    float per layer), then a session and the evaluation;
(b) qaev sequential: one calibration pass, cached weights, QDQ built from memory, one
    candidate after the other on one core;
(p) qaev as it runs by default: (b), with the next candidates built and given their ORT
    sessions on the cores left free, at most 2 ahead (``QAEV_PREFETCH=N`` sets it);
(c) qaev with caches + staged evaluation and the default prefetch of (p) (a race over 1/8,
    1/4, 1/2 of the set; only candidates that can still reach the front finish; with
    ``--finish end`` every candidate is screened on the first stage and the promising ones
    are raced after; on a small model such as digits the screen runs on the simulator, one
    float graph standing in for every candidate's QDQ model, as qaev does by default);
(d) qaev with 2 worker processes;
(e) with ``--rows ...,e``: qaev sequential with every quantized weight GPTQ-rounded and
    bias-corrected: "once: setup" then includes the layer-input statistics those need (or
    their load from the disk cache), and the build share the per-layer rounding (cached
    after a layer's first use).
Prints evaluations per minute, each stage's share of time, and the overhead ratio (wall
time per evaluation / pure ORT inference time of the same quantized models on the same
set), and beside it the in-run ratio (wall time / the row's own ORT inference time: the
machine's speed drifts between the pure-inference pass and a row, and this ratio does not
see it; it reads as an overhead for rows that run every item: (a), (b), (p), (e), and (d)
times its 2 workers). The search comparison also prints the per-candidate build + session
and inference times behind its time ratio; ``--repeat N`` runs it N times and prints the
median. One-time work (loading, qaev's calibration pass, the float model's metric that every
drop needs; for (d) the workers' start-up on two warm-up configs) is timed and printed
apart ("once: setup"); rates and ratios are per candidate after it, as in a search of many
candidates. Then runs a whole search twice, full evaluation vs caches + staging, and compares
hypervolume and wall time (each search's float metric, one-time work, is measured before
its clock starts). All figures are measured in this run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from qaev.cli.options import csv_list
from qaev.files import write_atomic
from qaev.config import QuantConfig, Rounding
from qaev.evaluation.evaluator import Evaluator
from qaev.runtime.parallel import make_runner
from qaev.problems import get_problem, problem_parts
from qaev.search.optimize import minimize
from qaev.model.session import make_session, run_batches
from qaev.evaluation.staging import Finish, Staging, dominated, is_final


def candidates(problem, n: int, seed: int) -> list[QuantConfig]:
    """Uniform anchors first, then seeded random genomes (distinct effective configs)."""
    space = problem.space
    rng = np.random.default_rng(seed)
    rows = [space.encode_uniform(w_bits=8, act="a8"), space.encode_uniform(w_bits=4, act="a8")]
    while len(rows) < 4 * n:
        rows.append(rng.integers(0, space.upper() + 1))
    seen, out = set(), []
    for row in rows:
        cfg = space.decode(row)
        if cfg.key() not in seen and cfg.layers:
            seen.add(cfg.key())
            out.append(cfg)
    return out[:n]


class _Reader:
    def __init__(self, dataset):
        self._it = iter(dataset.batches(batch_size=32))

    def get_next(self):
        return next(self._it, None)


def naive(parts, evaluator: Evaluator, configs, quantizer) -> dict:
    """quantize_static per candidate (calibration every time), then evaluate."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    reader_cls = type("Reader", (_Reader, CalibrationDataReader), {})
    by_name = {layer.name: layer for layer in quantizer.layers}
    times = {"quantize_static": 0.0, "session": 0.0, "inference": 0.0}
    start = time.perf_counter()
    evaluator.float_value  # noqa: B018 - once: the float model's metric, which every drop needs
    setup = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "float.onnx"
        onnx.save(parts.model.proto, str(src))
        for i, cfg in enumerate(configs):
            overrides = {}
            for name, layer_cfg in cfg.layers.items():
                layer = by_name[name]
                if layer.weight and layer_cfg.w_bits is not None:
                    kind = (QuantType.QInt4 if layer_cfg.w_bits <= 4 else
                            QuantType.QInt8 if layer_cfg.w_bits <= 8 else QuantType.QInt16)
                    overrides[layer.weight] = [{"quant_type": kind, "symmetric": True,
                                                "reduce_range": False, "axis": layer.channel_axis}]
            t0 = time.perf_counter()
            dst = Path(tmp) / f"q{i}.onnx"
            quantize_static(str(src), str(dst), reader_cls(parts.calib), quant_format=QuantFormat.QDQ,
                            per_channel=True, nodes_to_quantize=list(cfg.layers),
                            extra_options={"TensorQuantOverrides": overrides} if overrides else None)
            t1 = time.perf_counter()
            measured = evaluator.measure(onnx.load(str(dst)))
            times["quantize_static"] += t1 - t0
            times["session"] += measured.session_s
            times["inference"] += measured.inference_s
            evaluator.drop(measured.value)
    return {"wall_s": time.perf_counter() - start, "setup_s": setup, "stages": times}


def qaev_run(configs, *, staging=None, runner=None, eval_n=None, layer_stats: bool = False,
             prefetch: int | None = 0) -> dict:
    """``layer_stats``: also compute (or load) the layer-input statistics GPTQ rounding and
    bias correction need, as part of the setup, and print how long they took.
    ``prefetch``: candidates prepared ahead on other threads (None: the default)."""
    start = time.perf_counter()
    problem = get_problem(ARGS.problem, eval=eval_n, staging=staging, runner=runner)
    if prefetch is not None:
        problem.prefetch = prefetch
    problem.evaluator.float_value  # noqa: B018 - once: the float model's metric, which every drop needs
    if layer_stats:
        quantizer = problem.quantizer
        t0 = time.perf_counter()
        quantizer.inputs.get(next(layer for layer in quantizer.layers if layer.weight))
        stats_s = time.perf_counter() - t0
        print(f"    layer-input statistics for GPTQ / bias correction: {stats_s:.1f} s of the setup "
              f"({'computed' if stats_s >= 0.5 else 'loaded from the disk cache'})")
    if runner is not None:  # start the workers (each loads and calibrates) on two configs not timed
        space = problem.space
        problem.evaluate_many([space.decode(space.encode_uniform(w_bits=b, act="float")) for b in (8, 2)])
    setup = time.perf_counter() - start
    start = time.perf_counter()
    if staging is not None:  # the anchors are measured first; staging screens the rest against them
        problem.evaluate_many(configs[:2])
        problem.evaluate_many(configs[2:])
        problem.finish()  # screening (--finish end): race the promising ones now
        records = [problem.store.peek(c.key()) for c in configs]
    else:
        records = problem.evaluate_many(configs)
    wall = time.perf_counter() - start
    stages = {key[:-2]: sum(getattr(r.timings, key) for r in records)
              for key in ("build_s", "session_s", "inference_s")}
    fed = sum(r.timings.feed_s for r in records)  # screens on the simulator: its inputs instead of a build
    if fed:
        stages["feed"] = fed
    screened = sum(1 for r in problem.store.records() if not is_final(r))
    return {"wall_s": wall, "setup_s": setup, "stages": stages, "screened": screened, "records": records}


def with_gptq(configs) -> list[QuantConfig]:
    """The same candidates, every quantized weight GPTQ-rounded and bias-corrected."""
    from dataclasses import replace

    return [replace(cfg, layers={name: replace(c, rounding=Rounding.GPTQ, bias_correction=True) if c.w_bits else c
                                 for name, c in cfg.layers.items()}) for cfg in configs]


def pure_inference_s(problem, configs) -> float:
    """ORT inference time alone of every candidate's quantized model over the set."""
    total = 0.0
    for cfg in configs:
        session = make_session(problem.quantizer.build(cfg), threads=1)
        t0 = time.perf_counter()
        run_batches(session, problem.evaluator.data.batches(batch_size=problem.evaluator.batch_size))
        total += time.perf_counter() - t0
    return total


def _row(name, result, n, pure):
    per_eval = result["wall_s"] / n
    shares = ", ".join(f"{k} {100 * v / max(result['wall_s'], 1e-9):.0f}%" for k, v in result["stages"].items())
    overhead = per_eval / (pure / n)
    # wall / the row's own inference time: free of the machine's drift between this row and
    # the separate pure-inference pass (meaningful for rows that run every item)
    in_run = result["wall_s"] / max(1e-12, result["stages"]["inference"])
    print(f"{name:28s} {60 * n / result['wall_s']:9.1f} evals/min  overhead {overhead:5.2f} (in-run {in_run:4.2f})  "
          f"[{shares}]  once: setup {result['setup_s']:.1f} s")
    return {"evals_per_min": 60 * n / result["wall_s"], "overhead_ratio": overhead, "in_run_overhead": in_run,
            "wall_s": result["wall_s"],
            "setup_s": result["setup_s"],
            "stages": result["stages"], "screened": result.get("screened", 0)}


def _entered_front(problem, records) -> int:
    """How many fully measured candidates were non-dominated by those measured before them."""
    from qaev.search.front import non_dominated

    front, count = np.zeros((0, problem.n_obj)), 0
    for record in records:
        if record.ok and is_final(record):
            row = np.array(problem.objective_vector(record))
            count += not dominated(row, front)
            both = np.vstack([front, row])
            front = both[non_dominated(both)]
    return count


def search_comparison(gens: int, pop: int, eval_n, staging: Staging) -> dict:
    out = {}
    for name, stage in (("full", None), ("caches+staged", staging)):
        problem = get_problem(ARGS.problem, eval=eval_n, staging=stage)
        problem.evaluator.float_value  # noqa: B018 - once: the float model's metric, as in the rows above
        start = time.perf_counter()
        # without the predictor (qaev.search.surrogate), as the entries of RESULTS.md were measured
        result = minimize(problem, pop_size=pop, n_gen=gens, seed=ARGS.seed, predictor=False)
        wall = time.perf_counter() - start
        records = list(problem.store.records())
        stopped = [r.stage.n for r in records if not is_final(r)]
        n_set = len(problem.evaluator.data)
        full = sum(1 for r in records if r.ok and is_final(r))
        items = sum(stopped) + n_set * full
        improving = _entered_front(problem, records)
        per_candidate = {k: float(np.mean([getattr(r.timings, f"{k}_s") for r in records if r.ok] or [0.0]))
                         for k in ("build", "session", "feed", "inference")}
        simulated = sum(1 for r in records if r.screen is not None and r.screen.simulated)
        out[name] = {"wall_s": wall, "hypervolume": result.history[-1].hypervolume, "screened_on_simulator": simulated,
                     "front": len(result.front), "evaluations": problem.n_evaluated, "stopped_early": len(stopped),
                     "finished": full, "finished_entering_front": improving,
                     "stopped_at": {str(k): stopped.count(k) for k in sorted(set(stopped))},
                     "items_run_share": items / max(1, n_set * problem.n_evaluated), "per_candidate_s": per_candidate}
        print(f"search {name:14s} HV {out[name]['hypervolume']:.4f}  front {out[name]['front']:3d}  "
              f"evaluations {out[name]['evaluations']:4d}  wall {wall:7.1f} s  "
              f"stopped early {len(stopped)} {out[name]['stopped_at']}  finished {full} (of which entered the front "
              f"on arrival {improving})  share of items run {out[name]['items_run_share']:.2f}"
              + (f"  screened on the simulator {simulated}"
                 if stage is not None and stage.finish is Finish.END else ""))
    full, staged = out["full"]["per_candidate_s"], out["caches+staged"]["per_candidate_s"]
    fixed = staged["build"] + staged["session"] + staged["feed"]
    floor = (fixed + staged["inference"]) / max(1e-12, full["build"] + full["session"] + full["inference"])
    print(f"per candidate: preparing (build + session, or the simulator's inputs) {1e3 * fixed:.1f} ms, inference "
          f"{1e3 * staged['inference']:.1f} ms staged vs {1e3 * full['inference']:.1f} ms full (on any thread): "
          f"these costs alone stand at {floor:.2f}x")
    out["fixed_cost_floor"] = floor
    ratio = out["caches+staged"]["wall_s"] / out["full"]["wall_s"]
    hv = out["caches+staged"]["hypervolume"] / out["full"]["hypervolume"]
    print(f"staged / full: time {ratio:.2f}x, hypervolume {hv:.4f}x")
    out["time_ratio"], out["hv_ratio"] = ratio, hv
    return out


def throughput_rows(staging: Staging) -> dict:
    """(a)-(d) on the same candidates; returns every row's figures."""
    base = get_problem(ARGS.problem, eval=ARGS.eval)
    configs = candidates(base, ARGS.candidates, ARGS.seed)
    n = len(configs)
    pure = pure_inference_s(base, configs)
    print(f"{n} candidates; evaluation set {len(base.evaluator.data)} samples; "
          f"pure inference {pure / n * 1000:.1f} ms per candidate")
    results = {}
    rows = set(csv_list(ARGS.rows)) - ({"a"} if ARGS.skip_naive else set())
    if "a" in rows:
        parts = problem_parts(ARGS.problem, eval=ARGS.eval)
        evaluator = Evaluator(parts.model, base.evaluator.data, metric=parts.metric)
        results["naive quantize_static"] = _row("(a) naive quantize_static",
                                                naive(parts, evaluator, configs, base.quantizer), n, pure)
    if "b" in rows:
        results["qaev sequential"] = _row("(b) qaev sequential", qaev_run(configs, eval_n=ARGS.eval), n, pure)
    if "p" in rows:
        results["qaev prefetch"] = _row(f"(p) qaev, {base.prefetch} ahead",
                                        qaev_run(configs, eval_n=ARGS.eval, prefetch=None), n, pure)
    if "c" in rows:
        results["qaev caches+staged"] = _row("(c) qaev caches + staged",
                                             qaev_run(configs, staging=staging, eval_n=ARGS.eval, prefetch=None),
                                             n, pure)
    if "d" in rows:
        runner = make_runner(workers=2)
        try:
            results["qaev 2 workers"] = _row("(d) qaev 2 workers",
                                             qaev_run(configs, runner=runner, eval_n=ARGS.eval), n, pure)
        finally:
            runner.close()
    if "e" in rows:
        gptq = with_gptq(configs)
        results["qaev gptq+bc"] = _row("(e) qaev sequential, GPTQ+BC",
                                       qaev_run(gptq, eval_n=ARGS.eval, layer_stats=True), n,
                                       pure_inference_s(base, gptq))
    if "naive quantize_static" in results and "qaev sequential" in results:
        ratio = results["qaev sequential"]["evals_per_min"] / results["naive quantize_static"]["evals_per_min"]
        print(f"qaev sequential / naive: {ratio:.1f}x evaluations per minute")
    return results


def main(argv=None) -> int:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default="digits")
    parser.add_argument("--candidates", type=int, default=24)
    parser.add_argument("--eval", type=int, default=None, help="evaluation subset size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--search-pop", type=int, default=20)
    parser.add_argument("--search-gens", type=int, default=8)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--rows", default="a,b,p,c,d",
                        help="rows to run: a (naive), b, p (prefetch), c, d, e (GPTQ + bias correction)")
    parser.add_argument("--skip-rows", action="store_true", help="only the search comparison")
    parser.add_argument("--z", type=float, default=Staging().z, help="staging margin in standard errors")
    parser.add_argument("--eps-drop", type=float, default=Staging().eps_drop, help="staging epsilon on the drop")
    parser.add_argument("--eps-rel", type=float, default=Staging().eps_rel,
                        help="staging relative epsilon, other objectives")
    parser.add_argument("--finish", default=Staging().finish.value, choices=[f.value for f in Finish],
                        help="staging: race on arrival, or screen during the search and finish at its end")
    parser.add_argument("--repeat", type=int, default=1, help="run the search comparison this many times")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    ARGS = parser.parse_args(argv)
    print(f"command: python benchmarks/throughput.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"onnxruntime {ort.__version__}; one ORT thread per evaluation; all figures measured in this run")
    staging = Staging(z=ARGS.z, eps_drop=ARGS.eps_drop, eps_rel=ARGS.eps_rel, finish=ARGS.finish)
    results = {} if ARGS.skip_rows else throughput_rows(staging)
    results["search"] = search_comparison(ARGS.search_gens, ARGS.search_pop, ARGS.eval, staging)
    if ARGS.repeat > 1:  # the same comparison again: the spread of a noisy machine, and its median
        runs = [results["search"]] + [search_comparison(ARGS.search_gens, ARGS.search_pop, ARGS.eval, staging)
                                      for _ in range(ARGS.repeat - 1)]
        ratios = [r["time_ratio"] for r in runs]
        print(f"staged / full over {len(runs)} runs: time {', '.join(f'{r:.2f}' for r in ratios)}x; "
              f"median {float(np.median(ratios)):.2f}x")
        results["search_repeats"] = runs
    if ARGS.json:
        write_atomic(ARGS.json, json.dumps({"problem": ARGS.problem, "results": results}, indent=2, default=float))
    return 0


ARGS = None

if __name__ == "__main__":
    sys.exit(main())
