"""How far one uniform recipe's figure moves with the calibration subset and with the
images it is measured on.

    python benchmarks/calib_seeds.py --problem efficientnet-lite0 --seeds 0,1 --w-bits 4 --a-bits float --rounding gptq --bias-correction

For each seed the problem's data is split as ``qaev quantize --problem NAME --seed S`` splits
it: the recipe is calibrated on that seed's calibration samples and measured on that seed's
held-out samples (the figure that command prints). Then every seed's model is measured again
on one common set: the problem's test split where it has one, else the samples that no
seed's calibration used. On the common set the seeds differ only in their calibration; the
gap between the two readings is the share of the measuring samples. Each drop comes with
its paired standard error (``Evaluator.head_drop``), and ``changed`` counts the common-set
samples whose per-sample score differs from float's (for top-1: right <-> wrong). Every
figure is measured in this run.
"""  # noqa: E501 - the example command stays on one line, ready to copy
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from qaev.cli.options import layer_config_from
from qaev.config_io import load_layer_settings
from qaev.evaluation.evaluator import Evaluator
from qaev.quantize.sizes import model_bytes, other_bytes
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, uniform_config
from qaev.search.space import set_apart


def _keys(dataset) -> list[bytes]:
    """One digest per sample of an array dataset (its input rows)."""
    arrays = [dataset.inputs[name] for name in sorted(dataset.inputs)]
    return [hashlib.sha1(b"".join(a[i].tobytes() for a in arrays)).digest() for i in range(len(dataset))]


def common_set(problem: str, parts_by_seed: dict):
    """The problem's test split, else the samples of its whole set no seed calibrated on."""
    first = next(iter(parts_by_seed.values()))
    if first.test is not None:
        return first.test
    if first.full is None or not hasattr(first.full, "inputs"):
        sys.exit(f"{problem}: no test split and no whole set of arrays to take a common set from")
    used = {key for parts in parts_by_seed.values() for key in _keys(parts.calib)}
    keep = [i for i, key in enumerate(_keys(first.full)) if key not in used]
    if not keep:
        sys.exit(f"{problem}: every sample is used by some seed's calibration")
    return first.full.subset(keep)


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="efficientnet-lite0")
    parser.add_argument("--seeds", default="0,1", help="data-split seeds (comma list)")
    parser.add_argument("--common-seeds", default=None,
                        help="take the common set from these seeds' splits (default: --seeds), so runs of "
                             "different seeds measure on the same samples")
    parser.add_argument("--calib", type=int, default=None, help="calibration samples (default: the problem's)")
    parser.add_argument("--w-bits", default="4")
    parser.add_argument("--a-bits", default="float", help="4, 8, 16, dynamic or float")
    parser.add_argument("--per-tensor", action="store_true", help="per-tensor weight scales (default per-channel)")
    parser.add_argument("--rounding", choices=("nearest", "gptq"), default="nearest")
    parser.add_argument("--bias-correction", action="store_true")
    parser.add_argument("--weight-range", choices=("minmax", "mse"), default="minmax", help="weight grid range rule")
    parser.add_argument("--asymmetric", action="store_true", help="asymmetric weight grids")
    parser.add_argument("--exclude", action="append", default=[],
                        help="keep these layers float (name or re:REGEX, as `qaev quantize --exclude`); repeatable")
    parser.add_argument("--rounding-inputs", choices=("float", "quantized"), default="float",
                        help="fit rounding and bias correction to float inputs (per layer) or to the quantized "
                             "inputs of the layers before (in graph order)")
    parser.add_argument("--freeze", type=Path, default=None,
                        help="a YAML of layer settings that replace the recipe's (as `qaev quantize --freeze`)")
    return parser


def main(argv=None) -> dict:
    args = _parser().parse_args(argv)
    frozen = load_layer_settings(args.freeze) if args.freeze is not None else None
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    layer = replace(layer_config_from(w_bits=args.w_bits, a_bits=args.a_bits, per_channel=not args.per_tensor,
                                      block=None, asymmetric=args.asymmetric),
                    rounding=args.rounding, bias_correction=args.bias_correction, weight_range=args.weight_range)
    print(f"command: python benchmarks/calib_seeds.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    common_seeds = [int(s) for s in args.common_seeds.split(",") if s.strip()] if args.common_seeds else seeds
    parts = {s: problem_parts(args.problem, seed=s, calib=args.calib) for s in dict.fromkeys(seeds + common_seeds)}
    common = Evaluator(parts[seeds[0]].model, common_set(args.problem, {s: parts[s] for s in common_seeds}),
                       metric=parts[seeds[0]].metric)
    print(f"{args.problem}: recipe {layer.to_dict()}" + (f"; float: {', '.join(args.exclude)}" if args.exclude else "")
          + (f"; frozen: {args.freeze}" if args.freeze is not None else "")
          + f"; rounding inputs: {args.rounding_inputs}")
    print(f"common set: {len(common.data)} samples, float {common.float_value:.2f}")
    print(f"{'seed':>4s} {'calib':>5s} {'own n':>6s} {'own float':>9s} {'own drop':>14s} "
          f"{'common drop':>14s} {'changed':>7s}")
    rows = []
    for s in seeds:
        quantizer = Quantizer.calibrated(parts[s].model, parts[s].calib)
        config = set_apart(uniform_config(quantizer.layers, layer), quantizer.layers, exclude=args.exclude,
                           frozen=frozen)
        config = quantizer.resolve(replace(config, rounding_inputs=args.rounding_inputs))
        if s == seeds[0]:
            other = other_bytes(parts[s].model.proto, quantizer.layers)
            ratio = (model_bytes(quantizer.layers, replace(config, layers={}), other)
                     / model_bytes(quantizer.layers, config, other))
            print(f"size by bit count: {ratio:.2f}x smaller than float")
        model = quantizer.build(config)
        own = Evaluator(parts[s].model, parts[s].test or parts[s].eval, metric=parts[s].metric)
        own_drop, own_se = own.head_drop(own.measure(model, keep_outputs=True).outputs)
        outputs = common.measure(model, keep_outputs=True).outputs
        common_drop, common_se = common.head_drop(outputs)
        items = common.item_drops(outputs)
        rows.append({"seed": s, "calib": len(parts[s].calib), "own_n": len(own.data), "own_float": own.float_value,
                     "own_drop": own_drop, "own_se": own_se, "common_drop": common_drop, "common_se": common_se,
                     "changed": None if items is None else int(np.count_nonzero(items))})
        r = rows[-1]
        changed = "-" if r["changed"] is None else str(r["changed"])
        print(f"{s:4d} {r['calib']:5d} {r['own_n']:6d} {r['own_float']:9.2f} {own_drop:+8.2f} +-{own_se:4.2f} "
              f"{common_drop:+8.2f} +-{common_se:4.2f} {changed:>7s}")
    return {"common_n": len(common.data), "common_float": common.float_value, "ratio": ratio, "rows": rows}


if __name__ == "__main__":
    main()
