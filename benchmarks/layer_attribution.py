"""Which layers carry what a quantized model loses: per weight layer, the divergence from the
float model's outputs that comes back when that layer alone gets its float weights back, and
the divergence of that layer alone quantized.

    python benchmarks/layer_attribution.py --seed 0 --acts float --method block
    python benchmarks/layer_attribution.py --seed 0 --acts a8 --method gptq --mode restore --top 15

The quantized model is built as ``benchmarks/learned_rounding.py`` builds it (every weight
4-bit per-channel; ``--acts float`` or static 8-bit ``a8``; any option after ours goes to that
script's parser, e.g. ``--reg-weight 10``). Each layer's weight and bias, as the quantized
model computes them, are read from the model itself, then written as constants: the
*folded* model, whose outputs are the quantized model's (checked, and printed). Then per layer:

- ``restore``: the folded model with that layer's float weight and bias (activation
  quantization left as it is): what the layer's quantized weights cost in the model as built;
- ``alone``: the float model with that layer's quantized weight and bias: what they cost alone.

On a model whose layers were learned together (``--method block``) ``restore`` reads how
much the others lean on that layer's quantized weights: putting one back can raise the
divergence (the learned shifts and the later blocks compensate for its error); ``alone`` with
``--method gptq`` reads each layer's own cost on its grid.

Each row reads the mean KL divergence of the softmax from the float model's on the problem's
evaluation samples (millinats, with its standard error over the samples) and the top-1 drop.
The KL readings of ``restore`` do not add up to the model's (layers interact); their order
says where the loss sits. Nothing is fitted on the evaluation samples.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from qaev.evaluation.evaluator import Evaluator, get_metric
from qaev.model.graph import _drop_unused_initializers
from qaev.model.subgraphs import outer_reads
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, uniform_config

MODES = ("restore", "alone")


def _learned_rounding():
    """``benchmarks/learned_rounding.py``, which builds the models and reads the losses."""
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import learned_rounding

    return learned_rounding


def layer_values(model: onnx.ModelProto, names: list[str], feed: dict) -> dict[str, np.ndarray]:
    """The values ``model`` computes for the tensors ``names`` (weights and biases: the same for
    every input), read by running it once on ``feed``."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(names, feed)))


def _prune(model: onnx.ModelProto) -> None:
    """Drop the nodes no graph output depends on, then the initializers nothing reads."""
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in (*node.input, *outer_reads(node)) if i)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    _drop_unused_initializers(model)


def with_constants(model: onnx.ModelProto, values: dict[str, dict[int, np.ndarray | None]]) -> onnx.ModelProto:
    """``model`` with input slot ``k`` of node ``name`` set to a constant ``values[name][k]``
    (``None``: the slot emptied), the nodes no longer needed dropped."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = {n.name: n for n in out.graph.node}
    for name, slots in values.items():
        node = nodes[name]
        for slot, value in sorted(slots.items()):
            while len(node.input) <= slot:
                node.input.append("")
            if value is None:
                node.input[slot] = ""
                continue
            const = f"{name}.attribution{slot}"
            stale = [i for i, t in enumerate(out.graph.initializer) if t.name == const]
            for i in reversed(stale):
                del out.graph.initializer[i]
            out.graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), const))
            node.input[slot] = const
        while node.input and not node.input[-1]:
            node.input.pop()
    _prune(out)
    return out


def _slots(node: onnx.NodeProto) -> list[int]:
    """Input slots holding parameters: weight and bias (``Gather``: its table)."""
    return [0] if node.op_type == "Gather" else [1, 2]


def layer_parameters(model: onnx.ModelProto, layers: list[str], feed: dict) -> dict[str, dict[int, np.ndarray | None]]:
    """Per layer, its parameter slots' values as ``model`` computes them (``None``: no bias)."""
    nodes = {n.name: n for n in model.graph.node}
    wanted = {name: {s: nodes[name].input[s] if s < len(nodes[name].input) and nodes[name].input[s] else None
                     for s in _slots(nodes[name])} for name in layers}
    values = layer_values(model, sorted({t for slots in wanted.values() for t in slots.values() if t}), feed)
    return {name: {s: None if t is None else values[t] for s, t in slots.items()} for name, slots in wanted.items()}


def _reading(evaluator: Evaluator, model: onnx.ModelProto) -> dict:
    outputs = evaluator.measure(model, keep_outputs=True).outputs
    drop, _ = evaluator.head_drop(outputs)
    kl = _learned_rounding().kl_millinats(evaluator, outputs)
    if kl is None:
        raise SystemExit("layer attribution reads class scores of labelled items; this problem's outputs are not")
    return {"kl": float(kl.mean()), "kl_se": float(kl.std(ddof=1) / np.sqrt(len(kl))), "drop": drop}


def attribute(evaluator: Evaluator, float_model: onnx.ModelProto, quantized: onnx.ModelProto, layers: list[str],
              feed: dict, modes, *, top: int | None = None, on_row=None) -> list[dict]:
    """Rows of (layer, mode, KL, drop) for every layer, with the quantized model's own reading
    as the row named ``model`` and the folded copy's as ``folded``."""
    q_params = layer_parameters(quantized, layers, feed)
    f_params = layer_parameters(float_model, layers, feed)
    folded = with_constants(quantized, q_params)
    rows = [{"layer": "model", **_reading(evaluator, quantized)}, {"layer": "folded", **_reading(evaluator, folded)}]
    for row in rows:
        on_row(row) if on_row else None
    for mode in modes:
        for name in layers[:top]:
            model = (with_constants(folded, {name: f_params[name]}) if mode == "restore"
                     else with_constants(float_model, {name: q_params[name]}))
            rows.append({"layer": name, "mode": mode, **_reading(evaluator, model)})
            on_row(rows[-1]) if on_row else None
    return rows


def _print(row: dict) -> None:
    print(f"{row['layer'][:48]:48s} {row.get('mode', ''):8s} KL {row['kl']:8.2f} +-{row['kl_se']:5.2f}"
          f"  top-1 drop {row['drop']:+6.2f}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="efficientnet-lite0")
    parser.add_argument("--seed", type=int, default=0, help="data-split seed")
    parser.add_argument("--acts", choices=("float", "a8"), default="float")
    parser.add_argument("--method", default="block", help="nearest, gptq, adaround or block[:STEPS]")
    parser.add_argument("--mode", default="restore,alone", help="restore and/or alone (comma list)")
    parser.add_argument("--top", type=int, default=None, help="only the first N layers (in graph order)")
    parser.add_argument("--json", type=Path, default=None, help="append one JSON line per row")
    args, rest = parser.parse_known_args(argv)
    lr = _learned_rounding()
    build = lr.build_parser().parse_args(["--problem", args.problem, *rest])
    modes = [m for m in args.mode.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"--mode: unknown {sorted(unknown)}; choose from {list(MODES)}")
    print(f"command: python benchmarks/layer_attribution.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    import torch

    torch.set_num_threads(build.threads)
    parts = problem_parts(args.problem, seed=args.seed, calib=build.calib)
    quantizer = Quantizer.calibrated(parts.model, parts.calib)
    evaluator = Evaluator(parts.model, parts.test or parts.eval, metric=parts.metric)
    config = quantizer.resolve(uniform_config(quantizer.layers, lr._base(args.acts)))
    method = "block:500" if args.method == "block" else args.method
    output_loss = build.output_loss or get_metric(parts.metric).output_loss.value
    quantized, _ = lr._method(method, quantizer, config, build, args.seed, output_loss)
    layers = [layer.name for layer in quantizer.layers if config.layer(layer.name) and config.layer(layer.name).w_bits]
    feed = next(iter(parts.calib.batches(batch_size=1)))

    def on_row(row):
        _print(row)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps({"problem": args.problem, "seed": args.seed, "acts": args.acts,
                                    "method": method, **row}) + "\n")

    rows = attribute(evaluator, parts.model.proto, quantized, layers, feed, modes, top=args.top, on_row=on_row)
    for mode in modes:
        print(f"\n{mode}: the ten layers with the largest KL")
        for row in sorted((r for r in rows if r.get("mode") == mode), key=lambda r: -r["kl"])[:10]:
            _print(row)


if __name__ == "__main__":
    main()
