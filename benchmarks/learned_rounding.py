"""Learned rounding on a real problem: top-1 drop of 4-bit weights by rounding method.

    python benchmarks/learned_rounding.py --seeds 0 --acts float,a8 --methods nearest,gptq,adaround,block

Every weight 4-bit per-channel (symmetric, MSE-clipped grids: the best existing recipe's
grids), activations float (``float``) or static 8-bit on every layer (``a8``, ranges from
the calibration data). Methods: ``nearest``; ``gptq`` (GPTQ rounding with bias correction);
``adaround`` (layer-wise learned rounding, ``--rounding adaround``, with bias correction);
``block`` (block reconstruction, ``--rounding block``, at each ``--iters`` count, seeded
with the data-split seed). For each data-split seed the problem's calibration samples fit the
method and its held-out evaluation samples measure it; each drop comes with its paired
standard error (``Evaluator.head_drop``), and the mean over seeds with the root of the summed
squared errors over the seed count. Nothing is chosen on the evaluation samples. For class
scores with labels each row also keeps two continuous per-item losses (the true class's
negative log-likelihood and the divergence from the float softmax, :func:`class_score_losses`),
which ``--summary`` pairs between variants: they separate variants that top-1 flips on 1100
images cannot.

    python benchmarks/learned_rounding.py --seeds 0 --acts a8 --methods gptq,block --per-block   # where it overfits
    python benchmarks/learned_rounding.py --interpreter   # torch interpreter vs ONNX Runtime (and onnx2torch)
    python benchmarks/learned_rounding.py --layer-speed   # AdaRound step: Hessian form vs minibatches of rows
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from qaev.config import BlockSettings, LayerConfig
from qaev.data import mirrored
from qaev.evaluation.evaluator import Evaluator, get_metric
from qaev.evaluation.latency import cpu_name
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, uniform_config
from qaev.quantize.learned.reconstruct import OUTPUT_LOSSES, STARTS, ReconstructOptions
from qaev.quantize.learned.targets import TARGETS

if str(Path(__file__).resolve().parent) not in sys.path:  # loaded by file path (the tests): the learning package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning.checks import interpreter_check, layer_speed_check  # noqa: E402
from learning.summary import halves, read_rows, summary  # noqa: E402
from learning.summary import machines_line, variant_of  # noqa: E402, F401 - the tests read them from this script


def _base(act: str) -> LayerConfig:
    mode = {"float": "float", "a8": "static"}[act]
    return LayerConfig(w_bits=4, act=mode, a_bits=8, weight_range="mse")


def _ends_8bit(config, layers):
    """``config`` with its first and last layer's weights at 8 bits (as the published
    protocols of AdaRound, BRECQ and QDrop keep them)."""
    ends = {layers[0].name, layers[-1].name}
    return replace(config, layers={k: replace(v, w_bits=8) if k in ends else v for k, v in config.layers.items()})


def _with(config, rounding: str, bias_correction: bool):
    return replace(config, layers={k: replace(v, rounding=rounding, bias_correction=bias_correction)
                                   for k, v in config.layers.items()})


def _method(name: str, quantizer, config, args, seed: int, output_loss: str):
    """(QDQ model, extra record fields) of one rounding method on a resolved config; every
    method is built by ``Quantizer.build`` from the config that names it."""
    if name in ("nearest", "gptq", "adaround"):  # GPTQ and AdaRound with bias correction
        return quantizer.build(_with(config, name, name != "nearest"), resolved=True), {}
    quantizer.reconstruction = ReconstructOptions(batch_size=args.batch, lr=args.lr, learn_bias=not args.no_learn_bias,
                                                  start=args.start, reg_weight=args.reg_weight, mix=args.mix,
                                                  max_layers=args.max_layers, anchor=args.anchor, holdout=args.holdout,
                                                  target=args.target)
    learn_seed = seed if args.learn_seed is None else args.learn_seed
    cfg = replace(_with(config, "block", False), block=BlockSettings(iters=int(name.split(":")[1]), seed=learn_seed,
                                                                     output_loss=output_loss,
                                                                     learn_scale=args.learn_scale, mirror=args.mirror))
    model = quantizer.build(cfg, resolved=True)
    result = quantizer.reconstructed(cfg)
    return model, {"blocks": [[b.block, b.before, b.after, b.seconds,
                               *([] if b.stopped is None else [b.held_before, b.held_after, b.stopped])]
                              for b in result.blocks]}


def _methods(args) -> list[str]:
    """The methods to measure, ``block`` once per ``--iters`` count (``block:N``)."""
    methods = [m for m in args.methods.split(",") if m != "block"]
    if "block" in args.methods.split(","):
        methods += [f"block:{n}" for n in args.iters.split(",")]
    return methods


def _print_row(row: dict) -> None:
    """One measurement's lines: its drop and fitting time, then its calibration reading and per-block errors."""
    print(f"{row['seed']:4d} {row['acts']:5s} {row['method']:12s} {row['drop']:+7.2f} +-{row['se']:4.2f} "
          f"{row['fit_min']:7.1f} min ({row['fit_cpu_min']:.1f} cpu)", flush=True)
    if row.get("calib_kl") is not None:
        print(f"       on its calibration samples: drop {row['calib_drop']:+.2f}, KL {row['calib_kl']:.1f} "
              f"millinats (evaluation samples: {1000 * np.mean(row['kl_items']):.1f})")
    for i, (c, e) in enumerate(row.get("per_block", ())):
        print(f"       block {i + 1:2d}: calibration {c:.4g}  evaluation {e:.4g}  ratio {e / c:.2f}")


def measure(args) -> list[dict]:
    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(format="    %(message)s", stream=sys.stdout)
    logging.getLogger("qaev.learned").setLevel(logging.INFO)
    rows, machine = [], machine_fields(args.threads)
    methods = _methods(args)
    for seed in [int(s) for s in args.seeds.split(",")]:
        parts = problem_parts(args.problem, seed=seed, calib=args.calib)
        quantizer = Quantizer.calibrated(parts.model, parts.calib)
        evaluator = Evaluator(parts.model, parts.test or parts.eval, metric=parts.metric)
        # each model read on the samples it learned from (block reconstruction's: with --mirror, the mirror images too)
        on_calib = {m: Evaluator(parts.model, mirrored(parts.calib) if m else parts.calib, metric=parts.metric)
                    for m in {False, args.mirror}} if args.calib_reading else {}
        float_outputs: dict = {}  # the float model's block outputs, once per seed
        output_loss = args.output_loss or get_metric(parts.metric).output_loss.value
        for act in args.acts.split(","):
            config = uniform_config(quantizer.layers, _base(act))
            config = quantizer.resolve(_ends_8bit(config, quantizer.layers) if args.ends_8bit else config)
            for name in methods:
                start, cpu = time.perf_counter(), time.process_time()
                model, extra = _method(name, quantizer, config, args, seed, output_loss)
                fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
                outputs = evaluator.measure(model, keep_outputs=True).outputs
                items = evaluator.item_drops(outputs)
                drop, se = evaluator.head_drop(outputs, items=items)
                proxies = class_score_losses(evaluator.reference, outputs, evaluator.data.labels)
                row = {"problem": args.problem, "seed": seed, "acts": act, "method": name, "calib": len(parts.calib),
                       "drop": drop, "se": se, "output_loss": output_loss,
                       **({"start": args.start, "reg_weight": args.reg_weight, "learn_scale": args.learn_scale,
                           "mix": args.mix, "max_layers": args.max_layers, "anchor": args.anchor,
                           **({"holdout": args.holdout} if args.holdout else {}),
                           **({"target": args.target} if args.target != "float" else {}),
                           **({} if args.learn_seed is None else {"learn_seed": args.learn_seed})}
                          if name.startswith("block") else {}),
                       "items": None if items is None else [round(float(v), 6) for v in items],
                       "fit_min": fit_s / 60, "fit_cpu_min": fit_cpu / 60, "n": len(evaluator.data),
                       "float": evaluator.float_value, **proxies, **extra,
                       **({"mirror": True} if args.mirror and name.startswith("block") else {}),
                       **({"ends_8bit": True} if args.ends_8bit else {}),
                       **calib_reading(on_calib.get(args.mirror and name.startswith("block")), model),
                       "machine": machine}
                if args.per_block:
                    row["per_block"] = per_block_errors(parts, quantizer.layers, model, float_outputs)
                rows.append(row)
                _print_row(row)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(row) + "\n")
    return rows


def machine_fields(threads: int) -> dict:
    """What a learned result can depend on beyond the command: the processor and the kernels
    torch runs on it (``torch_cpu``: AVX512, AVX2, ...), the library versions and torch's threads."""
    import onnxruntime
    import torch

    return {"cpu": cpu_name(), "torch": torch.__version__, "torch_cpu": torch.backends.cpu.get_cpu_capability(),
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__, "threads": threads}


def kl_millinats(evaluator: Evaluator, outputs: np.ndarray) -> np.ndarray | None:
    """Per item of ``evaluator``'s data, the KL divergence of the softmax of ``outputs`` from
    the float model's (:func:`class_score_losses`), in millinats; None where the outputs are
    not class scores of labelled items."""
    kl = class_score_losses(evaluator.reference, outputs, evaluator.data.labels).get("kl_items")
    return None if kl is None else 1000 * np.asarray(kl)


def calib_reading(on_calib: Evaluator | None, model) -> dict:
    """The model read on its own calibration samples (``--calib-reading``): top-1 drop and
    mean KL from float (millinats), beside the evaluation samples' to show how much of what
    the learning gained there is fitting those samples."""
    if on_calib is None:
        return {}
    outputs = on_calib.measure(model, keep_outputs=True).outputs
    kl = kl_millinats(on_calib, outputs)
    return {"calib_drop": on_calib.head_drop(outputs)[0], "calib_kl": None if kl is None else float(kl.mean())}


def class_score_losses(reference: np.ndarray, outputs: np.ndarray, labels) -> dict:
    """Per evaluation item, two continuous readings of what a quantized classifier loses,
    far less noisy than a top-1 flip: ``nll_items``, the true class's negative log-likelihood
    minus the float model's (nats), and ``kl_items``, the Kullback-Leibler divergence of the
    quantized softmax from the float one. Empty for outputs that are not one score row per
    labelled item."""
    if labels is None or outputs.ndim != 2 or len(outputs) != len(labels) or outputs.shape != reference.shape:
        return {}

    def log_softmax(x):
        x = x.astype(np.float64) - x.max(axis=1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=1, keepdims=True))

    log_q, log_p = log_softmax(outputs), log_softmax(reference)
    rows, y = np.arange(len(labels)), np.asarray(labels, np.int64)
    nll = log_p[rows, y] - log_q[rows, y]
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=1)
    return {"nll_items": [round(float(v), 6) for v in nll], "kl_items": [round(float(v), 6) for v in kl]}


def per_block_errors(parts, layers, model, float_outputs: dict) -> list[tuple[float, float]]:
    """Per block of block reconstruction's cut, the mean squared error of the quantized
    model's block output against the float model's, on the calibration and on the evaluation
    samples (ONNX Runtime, the errors of every block before it included): where the learning
    fits the calibration samples and does not carry over, the second grows past the first.
    ``float_outputs`` keeps the float model's outputs between calls on the same split."""
    import onnx

    from qaev.model.session import make_session
    from qaev.quantize.learned.blocks import cut_blocks

    names = [b.output for b in cut_blocks(parts.model.proto, layers)]

    def outputs(proto, data):
        m = onnx.ModelProto()
        m.CopyFrom(proto)
        have = {o.name for o in m.graph.output}
        m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in names if t not in have)
        session = make_session(m, threads=1)
        runs = [session.run(names, feeds) for feeds in data.batches(batch_size=50)]
        return [np.concatenate([r[i] for r in runs]) for i in range(len(names))]

    errors = []
    for key, data in (("calib", parts.calib), ("eval", parts.test or parts.eval)):
        if key not in float_outputs:
            float_outputs[key] = outputs(parts.model.proto, data)
        ref, got = float_outputs[key], outputs(model, data)
        errors.append([float(np.mean((g - r) ** 2)) for g, r in zip(got, ref)])
    return list(zip(*errors))


def build_parser() -> argparse.ArgumentParser:
    """The options, shared with ``benchmarks/layer_attribution.py``, which builds its models
    the same way."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="efficientnet-lite0")
    parser.add_argument("--seeds", default="0", help="data-split seeds (comma list)")
    parser.add_argument("--calib", type=int, default=None,
                        help="calibration samples (default: the problem's, 200 for the Lite0 problems)")
    parser.add_argument("--acts", default="float,a8", help="float and/or a8 (comma list)")
    parser.add_argument("--methods", default="nearest,gptq,adaround,block")
    parser.add_argument("--iters", default="500", help="block reconstruction steps per block (comma list)")
    parser.add_argument("--batch", type=int, default=8, help="block reconstruction samples per step")
    parser.add_argument("--lr", type=float, default=ReconstructOptions().lr, help="rounding variables' learning rate")
    parser.add_argument("--reg-weight", type=float, default=ReconstructOptions().reg_weight,
                        help="weight of the rounding regulariser (10 before 2026-12-06)")
    parser.add_argument("--start", choices=STARTS, default=ReconstructOptions().start,
                        help="block reconstruction's starting rounding (nearest before 2026-12-06)")
    parser.add_argument("--output-loss", choices=OUTPUT_LOSSES, default=None,
                        help="what block reconstruction fits the block ending at the model's output on (default: "
                             "as qaev chooses it from the problem's metric: kl for top-1, mse before 2026-12-06)")
    parser.add_argument("--mix", type=float, default=ReconstructOptions().mix,
                        help="share of block-input elements taken from the float model while learning (QDrop)")
    parser.add_argument("--anchor", type=float, default=ReconstructOptions().anchor,
                        help="weight of the penalty on each rounding's distance from its start (0: none)")
    parser.add_argument("--holdout", type=float, default=ReconstructOptions().holdout,
                        help="share of the calibration samples each block does not learn from; the state that "
                             "reads best on them is kept (0: the last step)")
    parser.add_argument("--target", choices=TARGETS, default=ReconstructOptions().target,
                        help="what each block is fitted to: the float model's block output, or the float block "
                             "on the quantized block's own input")
    parser.add_argument("--max-layers", type=int, default=ReconstructOptions().max_layers,
                        help="weight layers after which a block may close (larger: fewer, larger blocks)")
    parser.add_argument("--no-learn-bias", action="store_true", help="learn rounding and step sizes only (BRECQ/QDrop)")
    parser.add_argument("--learn-scale", action=argparse.BooleanOptionalAction,
                        default=ReconstructOptions().learn_scale,
                        help="learn a gain of each weight scale with the rounding")
    parser.add_argument("--learn-seed", type=int, default=None,
                        help="seed of block reconstruction's random choices (default: each data-split seed): "
                             "how far top-1 moves with the learning's draw alone")
    parser.add_argument("--mirror", action="store_true",
                        help="block reconstruction learns from the calibration images and their mirror images "
                             "(block.mirror: twice the samples)")
    parser.add_argument("--ends-8bit", action="store_true",
                        help="the first and last layer's weights at 8 bits (the published protocols' setting)")
    parser.add_argument("--calib-reading", action="store_true",
                        help="also read each model on its own calibration samples (calib_drop, calib_kl)")
    parser.add_argument("--per-block", action="store_true",
                        help="also print each block's output error on calibration and evaluation samples")
    parser.add_argument("--adaround-iters", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per measurement")
    parser.add_argument("--summary", nargs="+", default=None, metavar="[LABEL=]FILE",
                        help="only print the summary of --json files (LABEL names a file's rows' variant)")
    parser.add_argument("--halves", action="store_true",
                        help="with --summary: each paired difference on a seeded half of the items and on the other")
    parser.add_argument("--interpreter", action="store_true", help="torch interpreter vs ONNX Runtime")
    parser.add_argument("--layer-speed", action="store_true", help="AdaRound step: Hessian form vs rows")
    return parser


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    print(f"command: python benchmarks/learned_rounding.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if args.summary is not None:
        rows = read_rows(args.summary)
        summary(rows)
        halves(rows) if args.halves else None
        return
    if args.interpreter or args.layer_speed:
        interpreter_check(args.threads) if args.interpreter else layer_speed_check(args.threads)
        return
    print(f"{'seed':>4s} {'acts':5s} {'method':12s} {'drop':>7s} {'se':>6s} {'fit':>11s}")
    summary(measure(args))


if __name__ == "__main__":
    main()
