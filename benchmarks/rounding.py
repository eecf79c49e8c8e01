"""Round-to-nearest against second-order (GPTQ) rounding and bias correction, uniform configs.

    python benchmarks/rounding.py --problem digits|efficientnet-lite0|minilm-l6-stsb
        [--eval N] [--calib N] [--bits 4,2] [--granularity per_channel] [--threads 1]
        [--layers re:PATTERN,...] [--nearest-only] [--asymmetric] [--input-samples 256,1400]
        [--codebook]

For every weight width in ``--bits``: uniform W<b>A8 (static 8-bit activations) and W<b>
weight-only, each with nearest and gptq rounding, without and with bias correction, all
from the same calibration data (layer-input statistics from up to 2048 of its samples). Each
config is measured on the problem's test split (``parts.test`` when the problem has one,
else its evaluation split) and printed as a Markdown table with the command, the model
hash, the ONNX Runtime version and the host; its header line gives the one-off cost of the
layer-input statistics, and ``build_s`` the build of each config (gptq rounding included).
``--layers`` quantizes only the selected layers (names or ``re:`` patterns; the others stay
float); ``--nearest-only`` leaves out the GPTQ and bias-correction variants.
``--input-samples`` repeats the table with the layer-input statistics taken from that many
leading calibration samples each (default: the library's default cap); the ``stats`` column
gives the input rows behind each data-aware row. ``--codebook`` adds, at 2 bits, a row with
``codebook`` rounding: embedding tables as learned 4-weight codebooks, every other layer
round-to-nearest on the row's grid.
"""
from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time

import onnxruntime as ort

from qaev.config import ActMode, Granularity, LayerConfig, Rounding
from qaev.evaluation.evaluator import Evaluator
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.layer_inputs import MAX_SAMPLES, LayerInputs
from qaev.quantize.rounding.groups import supports_data_aware
from qaev.quantize.weights import WeightCache
from qaev.search.space import select_layers

VARIANTS = ((Rounding.NEAREST, False), (Rounding.GPTQ, False), (Rounding.NEAREST, True), (Rounding.GPTQ, True))


def _parser() -> argparse.ArgumentParser:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problem", default="digits")
    parser.add_argument("--eval", type=int, default=None, help="Evaluation samples (default: all).")
    parser.add_argument("--calib", type=int, default=None, help="Calibration samples (default: the problem's).")
    parser.add_argument("--bits", default="4", help="Comma list of weight widths.")
    parser.add_argument("--granularity", default="per_channel", choices=[g.value for g in Granularity])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads.")
    parser.add_argument("--weight-ranges", default="minmax", help="Comma list of weight range rules (minmax,mse).")
    parser.add_argument("--acts", default="a8,float", help="Comma list: a8 (W*A8 rows), float (weight-only rows).")
    parser.add_argument("--layers", default=None,
                        help="Comma list of layer names or re: patterns to quantize (default all).")
    parser.add_argument("--nearest-only", action="store_true", help="Only round-to-nearest without bias correction.")
    parser.add_argument("--input-samples", default=None,
                        help="Comma list: calibration samples behind the layer-input statistics "
                             "(default: the library's cap).")
    parser.add_argument("--codebook", action="store_true", help="At 2 bits, also a row with codebook embedding tables.")
    parser.add_argument("--asymmetric", action="store_true",
                        help="Asymmetric weight grids (all 2^b levels; symmetric ones use 2^b - 1).")
    return parser


def _statistics(parts, quantizer: Quantizer, samples: list[int], *, threads: int):
    """The layer-input statistics from each number of leading calibration ``samples``: the first
    layer that reads them (``probe``, whose rows are counted) and ``by_cap``, samples ->
    (statistics, rows behind them, seconds to collect or load)."""
    by_cap = {}
    probe = next(layer for layer in quantizer.layers if supports_data_aware(layer))
    for n in samples:
        t0 = time.perf_counter()
        inputs = LayerInputs(parts.model, quantizer.layers, parts.calib, max_samples=n, cache=quantizer.inputs.cache,
                             threads=threads)
        rows = inputs.get(probe).rows
        by_cap[n] = (inputs, rows, time.perf_counter() - t0)
    return probe, by_cap


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    parts = problem_parts(args.problem, calib=args.calib, eval=args.eval)
    data = getattr(parts, "test", None) or parts.eval
    split = "test" if getattr(parts, "test", None) is not None else "eval"
    t0 = time.perf_counter()
    quantizer = Quantizer.calibrated(parts.model, parts.calib, threads=args.threads)
    calib_s = time.perf_counter() - t0
    samples = [int(n) for n in args.input_samples.split(",")] if args.input_samples else [MAX_SAMPLES]
    probe, by_cap = _statistics(parts, quantizer, samples, threads=args.threads)
    evaluator = Evaluator(parts.model, data, metric=parts.metric, threads=args.threads)
    fp = evaluator.float_value
    print(f"command: python benchmarks/rounding.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"model {parts.model.sha256[:16]}  onnxruntime {ort.__version__}  {platform.machine()} "
          f"{platform.processor() or platform.platform()}  calib {len(parts.calib)}  {split} n={len(data)}")
    print(f"activation calibration {calib_s:.1f} s; layer-input statistics: " + "; ".join(
        f"up to {n} samples: {rows} rows of {probe.name}, {t:.1f} s"
        f"{' (loaded)' if t < 0.5 and inputs.path else ''}" for n, (inputs, rows, t) in by_cap.items()))
    chosen = quantizer.layers
    if args.layers:
        names = select_layers(args.layers.split(","), [layer.name for layer in quantizer.layers], "--layers")
        chosen = [layer for layer in quantizer.layers if layer.name in names]
        print(f"quantized layers: {len(chosen)} of {len(quantizer.layers)} ({args.layers}); the others stay float")
    print(f"\n| config | range | rounding | bias corr. | stats | {parts.metric} | drop | size MB | build_s |")
    print("|---|---|---|---|---|---:|---:|---:|---:|")
    print(f"| float | - | - | - | - | {fp:.2f} | 0.00 | {parts.model.proto.ByteSize() / 1e6:.2f} | - |")
    acts = [(ActMode.STATIC, "A8") if a == "a8" else (ActMode.FLOAT, " weight-only") for a in args.acts.split(",")]
    for n, (inputs, rows, _) in by_cap.items():
        quantizer.inputs, quantizer.weights = inputs, WeightCache()  # cached GPTQ weights follow the statistics
        for bits, (act, suffix), weight_range in itertools.product(
                (int(b) for b in args.bits.split(",")), acts, args.weight_ranges.split(",")):
            label = f"W{bits}{suffix}"
            variants = VARIANTS[:1] if args.nearest_only else VARIANTS
            if args.codebook and bits == 2:
                variants += ((Rounding.CODEBOOK, False),)
            for rounding, bc in variants:
                data_aware = rounding is Rounding.GPTQ or bc
                if not data_aware and n != samples[0]:
                    continue  # round-to-nearest does not read the statistics: printed once
                cfg = LayerConfig(w_bits=bits, act=act, granularity=Granularity(args.granularity),
                                  rounding=rounding, bias_correction=bc, weight_range=weight_range,
                                  symmetric=not args.asymmetric)
                config = uniform_config(chosen, cfg)
                t0 = time.perf_counter()
                model = quantizer.build(config)
                build_s = time.perf_counter() - t0
                size = export_model(quantizer, config).ByteSize() / 1e6
                value = evaluator.measure(model).value
                stats = f"{rows} rows" if data_aware else "-"
                print(f"| {label} | {weight_range} | {rounding.value} | {'yes' if bc else 'no'} | {stats} "
                      f"| {value:.2f} | {fp - value:.2f} | {size:.2f} | {build_s:.2f} |", flush=True)
    print(f"\nmeasured on {len(data)} samples of the {split} split; sizes are exported files (native INT2/INT4).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
