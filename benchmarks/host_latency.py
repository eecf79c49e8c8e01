"""Host latency of dynamic-int8 models against the float model, side by side in one run.

    python benchmarks/host_latency.py [--problem minilm-l6-stsb] [--w-bits 8,6] [--batches 1,8]
        [--rounds 5] [--repeats 20] [--model FILE.onnx ...] [--control] [--profile]

Builds the uniform dynamic-int8 config (per-channel weights of each ``--w-bits`` width,
activations quantized at run time: the fastest kind of model qaev builds for CPUs) and
measures it, the float model and any ``--model`` files on the first B samples of the
problem's test split (its evaluation split if it has none): one ORT thread, median of
``--repeats`` runs, the rounds interleaved (float, then each model, again) and the median
round kept, so drift in the machine's load hits all alike
(:func:`qaev.evaluation.latency.side_by_side`). Prints milliseconds, the speed-up over
float, the machine's load averages around each batch's rounds, and each model's metric on
the whole split. ``--control`` measures a copy of the float model as one more model: its
speed-up, which would be 1.00x without noise, shows how far a model that computes what
float computes can read from 1.00x in this run. ``--profile`` adds, per
model at the largest batch, the share of kernel time of each operator type (ORT's
profiler), which shows what bounds the speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort

from qaev.config import ActMode, Granularity, LayerConfig
from qaev.evaluation.evaluator import Evaluator
from qaev.evaluation.latency import cpu_name, side_by_side
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, uniform_config
from qaev.model.session import make_session


CONTROL = "float again (control)"


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="minilm-l6-stsb")
    parser.add_argument("--calib", type=int, default=None, help="calibration samples (default: the problem's)")
    parser.add_argument("--w-bits", default="8,6", help="weight widths of the dynamic-int8 models")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", type=Path, action="append", default=[], help="also measure this file")
    parser.add_argument("--control", action="store_true",
                        help="also measure a copy of the float model (the noise floor of the speed-ups)")
    parser.add_argument("--profile", action="store_true", help="kernel time per operator type, largest batch")
    return parser


def _models(parts, widths: list[int], files: list[Path], *, control: bool) -> dict[str, onnx.ModelProto]:
    """The models to measure: float, the dynamic-int8 model of each weight width, the ``--model``
    files, then (with ``--control``) a copy of the float model."""
    quantizer = Quantizer.calibrated(parts.model, parts.calib)
    models: dict[str, onnx.ModelProto] = {"float": parts.model.proto}
    for bits in widths:
        cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=bits, act=ActMode.DYNAMIC,
                                                           granularity=Granularity.PER_CHANNEL))
        models[f"dynamic int8, {bits}-bit weights"] = quantizer.build(cfg)
    for path in files:
        models[path.name] = onnx.load(str(path))
    if control:
        models[CONTROL] = onnx.ModelProto.FromString(parts.model.proto.SerializeToString())
    return models


def main(argv=None) -> dict:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        widths = [int(b) for b in args.w_bits.split(",") if b]
        batch_sizes = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        parser.error(f"--w-bits and --batches take comma-separated integers, got {args.w_bits!r} and {args.batches!r}")
    if not batch_sizes or min(batch_sizes) < 1:
        parser.error(f"--batches: expected positive batch sizes, got {args.batches!r}")
    for path in args.model:
        if not path.is_file():
            parser.error(f"--model: {path}: no such file")
    print(f"command: python benchmarks/host_latency.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"onnxruntime {ort.__version__}; {cpu_name()}, {os.cpu_count()} logical CPUs; one ORT thread; "
          f"all figures measured in this run")
    parts = problem_parts(args.problem, **({"calib": args.calib} if args.calib else {}))
    data, split = (parts.test, "test split") if parts.test is not None else (parts.eval, "evaluation split")
    models = _models(parts, widths, args.model, control=args.control)
    test = Evaluator(parts.model, data, metric=parts.metric)
    print(f"metric and samples from the problem's {split} ({len(data)} items)")
    result = {"problem": args.problem, "split": split, "onnxruntime": ort.__version__, "models": {}}
    for name, model in models.items():
        value = test.measure(model).value
        result["models"][name] = {"metric": value, "drop": test.float_value - value, "latency_ms": {}}
    result["load"] = {}
    for batch in batch_sizes:
        feed = next(iter(test.data.batches(batch_size=batch)))
        timed = side_by_side(models, feed, reference="float", batch=batch, rounds=args.rounds, repeats=args.repeats,
                             warmup=3)
        for name in models:
            result["models"][name]["latency_ms"][batch] = timed.ms[name]
        result["load"][batch] = timed.load
        print(f"batch {batch}: load average (1, 5, 15 min) {timed.load[0]} before, {timed.load[1]} after")
    batches = list(result["models"]["float"]["latency_ms"])
    print(f"{'model':34s} {parts.metric:>9s} {'drop':>6s}" + "".join(f"  batch {b}: ms  speed-up" for b in batches))
    base = result["models"]["float"]["latency_ms"]
    for name, row in result["models"].items():
        cells = "".join(f"  {row['latency_ms'][b]:12.2f}  {base[b] / row['latency_ms'][b]:7.2f}x" for b in batches)
        print(f"{name:34s} {row['metric']:9.2f} {row['drop']:+6.2f}{cells}")
    if args.profile:
        feed = next(iter(test.data.batches(batch_size=batches[-1])))
        print(f"kernel time per operator type at batch {batches[-1]} (ORT profiler, {args.repeats} runs; top 6)")
        for name, model in models.items():
            shares = op_shares(model, feed, runs=args.repeats)
            result["models"][name]["kernel_ms_by_op"] = shares
            total = sum(shares.values())
            top = sorted(shares.items(), key=lambda kv: -kv[1])[:6]
            print(f"  {name:32s} {total:7.2f} ms: " + ", ".join(f"{op} {100 * ms / total:.0f}%" for op, ms in top))
    return result


def op_shares(model: onnx.ModelProto, feed: dict, *, runs: int) -> dict[str, float]:
    """Mean kernel milliseconds per run of each operator type (ORT's profiler)."""
    with tempfile.TemporaryDirectory() as tmp:
        session = make_session(model, profile_prefix=str(Path(tmp) / "profile"))
        for _ in range(runs):
            session.run(None, dict(feed))
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            totals[op] = totals.get(op, 0.0) + event["dur"] / 1000.0 / runs
    return totals


if __name__ == "__main__":
    main()
