"""Host speed of a qaev W8A8 model against the float model, side by side in one run.

    python benchmarks/int8_speed.py [--model M.onnx] [--batch 8] [--repeats 20] [--threads 1]

Without --model it builds a ResNet-like stack of 3x3 convolutions (64x64 input, random
weights: speed does not depend on the weight values). Prints the median latency of each
and the ratio, plus the fused integer kernels found in the optimised W8A8 graph.
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from qaev.config import LayerConfig
from qaev.data import ArrayDataset
from qaev.model.graph import load_model
from qaev.evaluation.latency import host_latency_ms
from qaev.quantize import Quantizer, uniform_config
from qaev.model.session import make_session


def resnet_like(*, width: int = 64, blocks: int = 6, size: int = 64, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    inits, nodes, prev, c_in = [], [], "x", 3
    for i in range(blocks):
        w = (rng.normal(size=(width, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
        b = np.zeros(width, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes += [helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"conv{i}"),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        prev, c_in = f"r{i}", width
    wf = (rng.normal(size=(width, 10)) * 0.1).astype(np.float32)
    inits.append(numpy_helper.from_array(wf, "wf"))
    nodes += [helper.make_node("GlobalAveragePool", [prev], ["g"], name="pool"),
              helper.make_node("Flatten", ["g"], ["f"], name="flat"),
              helper.make_node("MatMul", ["f", "wf"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "resnet_like",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    float_model = load_model(args.model if args.model else resnet_like())
    (name, value), = float_model.inputs.items()
    dims = [d.dim_value or args.batch for d in value.type.tensor_type.shape.dim]
    dims[0] = args.batch
    rng = np.random.default_rng(0)
    x = rng.normal(size=dims).astype(np.float32)
    quantizer = Quantizer.calibrated(float_model, ArrayDataset(inputs={name: x}, name="random"), persist=False)
    w8a8 = quantizer.build(uniform_config(quantizer.layers, LayerConfig(w_bits=8)))
    with tempfile.TemporaryDirectory() as tmp:
        optimized = str(Path(tmp) / "opt.onnx")
        make_session(w8a8, threads=args.threads, optimized_path=optimized)
        fused = sorted({n.op_type for n in onnx.load(optimized).graph.node if n.op_type.startswith("QLinear")})
    float_ms = host_latency_ms(float_model.proto, {name: x}, repeats=args.repeats, warmup=3, threads=args.threads)
    quant_ms = host_latency_ms(w8a8, {name: x}, repeats=args.repeats, warmup=3, threads=args.threads)
    print(f"model: {args.model or 'built-in resnet_like (6 conv 3x3, 64 ch, 64x64)'}  batch {args.batch}  "
          f"threads {args.threads}  repeats {args.repeats}")
    print(f"host: {platform.processor() or platform.machine()}  onnxruntime {ort.__version__}  (measured)")
    print(f"fused integer kernels in the W8A8 graph: {', '.join(fused) or 'none'}")
    print(f"float  median {float_ms:8.2f} ms")
    print(f"W8A8   median {quant_ms:8.2f} ms")
    print(f"speed-up W8A8 / float: {float_ms / quant_ms:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
