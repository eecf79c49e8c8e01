"""Measure and refit the figures of the ``host`` table with ONNX Runtime on this machine.

``python -m qaev.hostfit.fit`` prints single-node figures as JSON. Each is the median
over 3 passes of the median of ``repeats`` timed runs of a tiny single-node model built with
``onnx.helper`` (one ORT intra-op thread, ``ORT_ENABLE_BASIC``), so the numbers are
effective rates of ORT's CPU kernels, not datasheet peaks.

``python -m qaev.hostfit.fit --whole-model`` times random per-layer configs of a real
model (EfficientNet-Lite0 by default; none of the configs that
``benchmarks/cost_model_fidelity.py`` reports on) and refits the table's MAC rates,
bandwidth and conversion times by non-negative least squares on the cost model's own terms
(:mod:`qaev.hostfit.refit`; the timing helpers it shares with the fidelity benchmark
are in :mod:`qaev.hostfit.timing`). Copy the printed figures into ``host.yaml`` with the command in each
``source``.
"""
from __future__ import annotations

import json
import platform
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

__all__ = ["measure", "main"]

_F, _U8, _I8, _I4 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT4


def _model(nodes, inputs, outputs, inits, *, ms_domain: bool = False) -> bytes:
    opsets = [helper.make_opsetid("", 21)] + ([helper.make_opsetid("com.microsoft", 1)] if ms_domain else [])
    graph = helper.make_graph(nodes, "m", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=opsets, ir_version=10).SerializeToString()


def _time(model: bytes, feeds: dict, *, threads: int, repeats: int) -> float:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def _conv(rng, *, int8: bool, threads: int, repeats: int) -> float:
    """MAC/s of a 64->64 3x3 Conv on 56x56 (float, or QLinearConv u8 x s8 per-channel)."""
    c, hw = 64, 56
    macs = hw * hw * c * c * 9
    w = rng.standard_normal((c, c, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
    if not int8:
        node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
        m = _model([node], [_vi("x", _F, x.shape)], [_vi("y", _F, None)], [numpy_helper.from_array(w, "w")])
        return macs / _time(m, {"x": x}, threads=threads, repeats=repeats)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
        numpy_helper.from_array(np.array(128, np.uint8), "xz"),
        numpy_helper.from_array(rng.integers(-127, 128, w.shape).astype(np.int8), "w"),
        numpy_helper.from_array(np.full(c, 0.01, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(c, np.int8), "wz"),
        numpy_helper.from_array(np.array(0.1, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
    ]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], pads=[1, 1, 1, 1])
    m = _model([node], [_vi("x", _U8, x.shape)], [_vi("y", _U8, None)], inits)
    xq = rng.integers(0, 256, x.shape).astype(np.uint8)
    return macs / _time(m, {"x": xq}, threads=threads, repeats=repeats)


def _matmul(rng, *, mode: str, threads: int, repeats: int, m_rows: int = 256, k: int = 1024, n: int = 1024) -> float:
    """MAC/s of an (m x k) @ (k x n) MatMul: float, QLinearMatMul u8 x s8, or dynamic int8."""
    a = rng.standard_normal((m_rows, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    macs = m_rows * k * n
    if mode == "float":
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        model = _model([node], [_vi("a", _F, a.shape)], [_vi("y", _F, None)], [numpy_helper.from_array(b, "b")])
        return macs / _time(model, {"a": a}, threads=threads, repeats=repeats)
    bq = numpy_helper.from_array(rng.integers(-127, 128, b.shape).astype(np.int8), "b")
    bs = numpy_helper.from_array(np.full(n, 0.01, np.float32), "bs")
    bz = numpy_helper.from_array(np.zeros(n, np.int8), "bz")
    if mode == "dynamic":
        node = helper.make_node("DynamicQuantizeMatMul", ["a", "b", "bs", "bz"], ["y"], domain="com.microsoft")
        model = _model([node], [_vi("a", _F, a.shape)], [_vi("y", _F, None)], [bq, bs, bz], ms_domain=True)
        return macs / _time(model, {"a": a}, threads=threads, repeats=repeats)
    inits = [
        numpy_helper.from_array(np.array(0.05, np.float32), "as"),
        numpy_helper.from_array(np.array(128, np.uint8), "az"),
        bq,
        numpy_helper.from_array(np.array(0.01, np.float32), "bs1"),
        numpy_helper.from_array(np.array(0, np.int8), "bz1"),
        numpy_helper.from_array(np.array(0.1, np.float32), "ys"),
        numpy_helper.from_array(np.array(128, np.uint8), "yz"),
    ]
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs1", "bz1", "ys", "yz"], ["y"])
    model = _model([node], [_vi("a", _U8, a.shape)], [_vi("y", _U8, None)], inits)
    aq = rng.integers(0, 256, a.shape).astype(np.uint8)
    return macs / _time(model, {"a": aq}, threads=threads, repeats=repeats)


def _overhead(rng, *, threads: int, repeats: int, n: int = 64) -> float:
    """Seconds per extra tiny node: slope between a chain of ``n`` and of 1 tiny MatMuls."""
    w = numpy_helper.from_array(rng.standard_normal((16, 16)).astype(np.float32), "w")
    x = rng.standard_normal((1, 16)).astype(np.float32)

    def chain(length):
        names = ["x"] + [f"t{i}" for i in range(length - 1)] + ["y"]
        nodes = [helper.make_node("MatMul", [names[i], "w"], [names[i + 1]]) for i in range(length)]
        return _model(nodes, [_vi("x", _F, x.shape)], [_vi("y", _F, None)], [w])

    one = _time(chain(1), {"x": x}, threads=threads, repeats=repeats * 5)
    many = _time(chain(n), {"x": x}, threads=threads, repeats=repeats * 5)
    return max(many - one, 0.0) / (n - 1)


def _convert(rng, *, kind: str, threads: int, repeats: int, elems: int = 1 << 22) -> float:
    """Seconds per element of QuantizeLinear (f32->u8), DequantizeLinear (u8->f32) or int4 weight DQ."""
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "s")
    if kind == "quantize":
        zp = numpy_helper.from_array(np.array(128, np.uint8), "z")
        node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
        model = _model([node], [_vi("x", _F, [elems])], [_vi("y", _U8, None)], [scale, zp])
        feeds = {"x": rng.standard_normal(elems).astype(np.float32)}
    elif kind == "dequantize":
        zp = numpy_helper.from_array(np.array(128, np.uint8), "z")
        node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])
        model = _model([node], [_vi("x", _U8, [elems])], [_vi("y", _F, None)], [scale, zp])
        feeds = {"x": rng.integers(0, 256, elems).astype(np.uint8)}
    else:  # int4 weight (an initializer, as exported) dequantized every run
        w = helper.make_tensor("w", _I4, [elems], rng.integers(-8, 8, elems).tolist())
        node = helper.make_node("DequantizeLinear", ["w", "s"], ["d"])
        add = helper.make_node("Add", ["d", "x"], ["y"])  # keeps DQ a run-time node with a real input
        model = _model([node, add], [_vi("x", _F, [1])], [_vi("y", _F, None)], [w, scale])
        feeds = {"x": np.zeros(1, np.float32)}
        add_only = _model([helper.make_node("Add", ["d", "x"], ["y"])], [_vi("x", _F, [1])], [_vi("y", _F, None)],
                          [numpy_helper.from_array(np.zeros(elems, np.float32), "d")])
        base = _time(add_only, feeds, threads=threads, repeats=repeats)
        return max(_time(model, feeds, threads=threads, repeats=repeats) - base, 0.0) / elems
    return _time(model, feeds, threads=threads, repeats=repeats) / elems


def measure(*, threads: int = 1, repeats: int = 20, runs: int = 3) -> dict:
    """Measure effective host figures with ONNX Runtime.

    Args:
        threads: ORT intra-op threads.
        repeats: timed runs per figure within one pass (the median is kept).
        runs: passes with seeds ``0..runs-1``; each figure is the median over passes.

    Returns:
        A dict of figures (MAC/s, bytes/s, s, s per element) plus the environment.
    """
    passes = [_measure_once(threads=threads, repeats=repeats, seed=s) for s in range(runs)]
    out = {k: statistics.median(p[k] for p in passes) for k in passes[0]}
    out["env"] = {
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": threads,
        "repeats": repeats,
        "runs": runs,
    }
    return out


def _measure_once(*, threads: int, repeats: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    kw = {"threads": threads, "repeats": repeats}
    k = n = 4096  # GEMV over a 64 MiB fp32 weight: bound by memory bandwidth
    gemv_macs = _matmul(rng, mode="float", m_rows=1, k=k, n=n, **kw)
    return {
        "float_conv_macs_per_s": _conv(rng, int8=False, **kw),
        "int8_conv_macs_per_s": _conv(rng, int8=True, **kw),
        "float_matmul_macs_per_s": _matmul(rng, mode="float", **kw),
        "int8_matmul_macs_per_s": _matmul(rng, mode="int8", **kw),
        "dyn8_matmul_macs_per_s": _matmul(rng, mode="dynamic", **kw),
        "gemv_bandwidth_bytes_per_s": gemv_macs * 4,  # 4 weight bytes read per MAC
        "layer_overhead_s": _overhead(rng, **kw),
        "quantize_s_per_element": _convert(rng, kind="quantize", **kw),
        "dequantize_s_per_element": _convert(rng, kind="dequantize", **kw),
        "int4_dequantize_s_per_element": _convert(rng, kind="int4", **kw),
    }



def main(argv=None) -> int:
    """``python -m qaev.hostfit.fit [--whole-model ...]``: print the figures as JSON.

    Without ``--whole-model``: the single-node micro-benchmarks of :func:`measure`. With
    it: time ``--configs`` random mixes of a model (disjoint from the fidelity benchmark's
    configs of ``--exclude-seed``) and refit the table's coefficients by least squares
    (:func:`fit_whole_model`).
    """
    import argparse
    import shlex
    import sys

    parser = argparse.ArgumentParser(prog="python -m qaev.hostfit.fit", description=main.__doc__)
    parser.add_argument("--whole-model", action="store_true", help="refit from whole-model latencies")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (micro: 20) or rounds (whole model: 10)")
    parser.add_argument("--runs", type=int, default=3, help="micro-benchmark passes")
    parser.add_argument("--problem", choices=("efficientnet-lite0", "digits"), default="efficientnet-lite0")
    parser.add_argument("--model", help="an ONNX file instead of the problem's model")
    parser.add_argument("--configs", type=int, default=40, help="random mixes to time")
    parser.add_argument("--seed", type=int, default=1, help="seed of the mixes (not the benchmark's)")
    parser.add_argument("--exclude-seed", type=int, default=0, help="seed of the benchmark's config set")
    parser.add_argument("--exclude-configs", type=int, default=24, help="size of the benchmark's config set")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--graph", choices=("export", "eval"), default="export")
    parser.add_argument("--table", default="host", help="table to start from")
    parser.add_argument("--tie", nargs="*", default=[], metavar="PAIR=PAIR",
                        help="native pairs fitted with one shared rate, e.g. w8afloat=wfloatafloat")
    parser.add_argument("--measurements", help="JSON file of the timings: reused when it covers the configs, "
                        "else written")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command = " ".join([parser.prog, *map(shlex.quote, argv)])
    if args.whole_model:
        args.repeats = args.repeats or 10
        from qaev.hostfit.refit import whole_model

        print(json.dumps(whole_model(args), indent=2))
    else:
        print(json.dumps(measure(threads=args.threads, repeats=args.repeats or 20, runs=args.runs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
