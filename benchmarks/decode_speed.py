"""Decoding speed of a decoder problem: tokens per second with the key/value cache, batch 1,
for the float model, uniform int8, uniform 4-bit and chosen front points, side by side.

    python benchmarks/decode_speed.py [--problem llama-pydocs] [--run DIR --points p03,p07]
        [--prompt 128] [--tokens 64] [--rounds 5] [--eval N] [--json]

Each model generates ``--tokens`` tokens greedily after the first ``--prompt`` tokens of
the problem's first test window (:func:`qaev.evaluation.decode.generate`): one ORT thread,
the rounds interleaved (float, then each model, again) and the median round kept, so drift
in the machine's load hits all alike. Models: float; uniform int8 (8-bit per-channel
weights, activations quantized at run time: dynamic int8); uniform 4-bit (block-32
weight-only, round to nearest: at accuracy level 0 folded to float weights, at 4 MatMulNBits); and the
``--points`` of a run directory, exported as they ship (with the run's calibration data
where they need it). Speed does not depend on how the weights were rounded. Prints tokens/s,
ms per token, the speed-up over float, size by bit count, how many generated tokens equal
float's, and with ``--eval N`` the perplexity on the first N test windows.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig
from qaev.evaluation.decode import generate
from qaev.evaluation.evaluator import Evaluator
from qaev.evaluation.latency import cpu_name
from qaev.model.session import make_session
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.sizes import model_bytes, other_bytes

_UNIFORM = {
    "uniform int8 (dynamic, 8-bit per-channel weights)": (LayerConfig(w_bits=8, act=ActMode.DYNAMIC,
                                                                      granularity=Granularity.PER_CHANNEL), 0),
    "uniform 4-bit (block 32, accuracy_level 0)": (LayerConfig(w_bits=4, act=ActMode.FLOAT,
                                                               granularity=Granularity("block32")), 0),
    "uniform 4-bit (block 32, accuracy_level 4)": (LayerConfig(w_bits=4, act=ActMode.FLOAT,
                                                               granularity=Granularity("block32")), 4),
}


def _point_configs(run: Path, points: list[str]):
    from qaev.config_io import load_config
    from qaev.runtime.rundir import read_front

    doc = read_front(run)
    known = {p["id"]: p for p in doc["points"]}
    missing = [p for p in points if p not in known]
    if missing:
        raise SystemExit(f"--points: {', '.join(missing)} not in {run}/front.json ({', '.join(known)})")
    return {f"{run.name}:{p}": load_config(run / known[p]["config"]) for p in points}


def build_models(args, parts) -> tuple[dict, Quantizer]:
    """name -> (deployed model, config or None) and the quantizer that built them."""
    configs = _point_configs(args.run, args.points) if args.run else {}
    if any(c.needs_data for c in configs.values()):
        from qaev.cli.export import quantizer_for

        quantizer = quantizer_for(args.run, parts.model, list(configs.values()))
    else:
        quantizer = Quantizer(parts.model)
    models = {"float": (parts.model.proto, None)}
    for name, (cfg, level) in _UNIFORM.items():
        weighted = [layer for layer in quantizer.layers if layer.has_weight]  # attention MatMuls stay float
        config = replace(uniform_config(weighted, cfg), nbits_accuracy=level)
        models[name] = (export_model(quantizer, config), config)
    for name, config in configs.items():
        models[name] = (export_model(quantizer, config), config)
    return models, quantizer


def measure(models: dict, prompt: np.ndarray, *, tokens: int, rounds: int) -> dict:
    """name -> median tokens/s over ``rounds`` interleaved generations, and the tokens of the last."""
    sessions = {name: make_session(model) for name, (model, _) in models.items()}
    speeds = {name: [] for name in models}
    generated = {}
    for session in sessions.values():
        generate(session, prompt, 4)  # warm up
    for _ in range(rounds):
        for name, session in sessions.items():
            run = generate(session, prompt, tokens)
            speeds[name].append(run.tokens_per_s)
            generated[name] = run.tokens
    return {name: {"tokens_per_s": statistics.median(values), "rounds_tokens_per_s": values,
                   "tokens": generated[name]} for name, values in speeds.items()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="llama-pydocs")
    parser.add_argument("--run", type=Path, default=None, help="a qaev search run directory")
    parser.add_argument("--points", default="", help="point ids of --run (comma-separated)")
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--eval", type=int, default=0, help="also measure perplexity on the first N test windows")
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)
    args.points = [p for p in args.points.split(",") if p]
    if bool(args.run) != bool(args.points):
        parser.error("--run and --points go together")
    if args.tokens < 2 or args.prompt < 1 or args.rounds < 1:
        parser.error("--tokens must be >= 2, --prompt and --rounds >= 1")
    print(f"command: python benchmarks/decode_speed.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"onnxruntime {ort.__version__}; {cpu_name()}, {os.cpu_count()} logical CPUs, load average "
          f"{os.getloadavg()[0]:.1f} at start; one ORT thread, batch 1; all figures measured in this run")
    parts = problem_parts(args.problem)
    data = parts.test if parts.test is not None else parts.eval
    models, quantizer = build_models(args, parts)
    prompt = data.tokens[:1, :args.prompt]
    speeds = measure(models, prompt, tokens=args.tokens, rounds=args.rounds)
    result = _rows(models, speeds, quantizer, data if args.eval else None, args.eval, parts)
    _print(result, args)
    if args.json:
        print(json.dumps(result, indent=1))
    return result


def _rows(models, speeds, quantizer, data, n_eval: int, parts) -> dict:
    other = other_bytes(parts.model.proto, quantizer.layers)
    base = speeds["float"]
    rows = {}
    for name, (model, config) in models.items():
        speed = speeds[name]
        size = model_bytes(quantizer.layers, config if config is not None else QuantConfig(), other)
        row = {"tokens_per_s": speed["tokens_per_s"], "ms_per_token": 1000.0 / speed["tokens_per_s"],
               "speedup": speed["tokens_per_s"] / base["tokens_per_s"], "size_mb": size / 1e6,
               "file_mb": len(model.SerializeToString()) / 1e6,
               "same_tokens": float(np.mean(speed["tokens"] == base["tokens"])),
               "rounds_tokens_per_s": speed["rounds_tokens_per_s"]}
        if data is not None:
            evaluator = Evaluator(parts.model, data.head(n_eval), metric="perplexity")
            row["perplexity"] = evaluator.measure(model.SerializeToString()).value
            row["perplexity_drop_pct"] = evaluator.drop(row["perplexity"])
        rows[name] = row
    return {"problem": parts.model.path.name if parts.model.path else None, "onnxruntime": ort.__version__,
            "models": rows}


def _print(result: dict, args) -> None:
    print(f"prompt {args.prompt} tokens, {args.tokens} generated, median of {args.rounds} rounds")
    ppl = args.eval > 0
    header = f"{'model':52s} {'tok/s':>7s} {'ms/tok':>7s} {'speed-up':>8s} {'MB bits':>8s} {'MB file':>8s} {'same':>5s}"
    print(header + (f" {'ppl':>7s} {'drop %':>7s}" if ppl else ""))
    for name, row in result["models"].items():
        line = (f"{name:52s} {row['tokens_per_s']:7.0f} {row['ms_per_token']:7.3f} {row['speedup']:7.2f}x "
                f"{row['size_mb']:8.3f} {row['file_mb']:8.3f} {row['same_tokens']:5.2f}")
        if ppl:
            line += f" {row['perplexity']:7.3f} {row['perplexity_drop_pct']:+7.2f}"
        print(line)


if __name__ == "__main__":
    main()
