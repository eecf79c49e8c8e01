"""Measure and refit the figures of the ``host`` table with ONNX Runtime on this machine.

``python -m qaev.hardware.fit_host`` prints single-node figures as JSON. Each is the median
over 3 passes of the median of ``repeats`` timed runs of a tiny single-node model built with
``onnx.helper`` (one ORT intra-op thread, ``ORT_ENABLE_BASIC``), so the numbers are
effective rates of ORT's CPU kernels, not datasheet peaks.

``python -m qaev.hardware.fit_host --whole-model`` times random per-layer configs of a real
model (EfficientNet-Lite0 by default; none of the configs that
``benchmarks/cost_model_fidelity.py`` reports on) and refits the table's MAC rates,
bandwidth and conversion times by non-negative least squares on the cost model's own terms
(:func:`fit_whole_model`). The helpers that build and time the configs are shared with the
fidelity benchmark. Copy the printed figures into ``host.yaml`` with the command in each
``source``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "measure", "main", "resolve_model", "random_feed", "noise_quantizer", "timed_model", "fidelity_configs",
    "time_interleaved", "with_values", "cost_features", "fit_whole_model", "estimate_rows",
    "UNIFORM_SETTINGS", "MIX_W_BITS", "MIX_ACTS",
]

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


# ---------------------------------------------------------------- whole-model measurements
#: Uniform settings every fidelity config set starts with (label, LayerConfig keywords).
UNIFORM_SETTINGS: tuple[tuple[str, dict], ...] = (
    ("float", {"w_bits": None, "act": "float"}),
    ("W8A8", {"w_bits": 8}),
    ("W4A8", {"w_bits": 4}),
    ("W8 weight-only", {"w_bits": 8, "act": "float"}),
    ("W4 weight-only", {"w_bits": 4, "act": "float"}),
    ("W8 dyn8", {"w_bits": 8, "act": "dynamic"}),
    ("W8A16", {"w_bits": 8, "a_bits": 16}),
    ("W16A16", {"w_bits": 16, "a_bits": 16}),
    ("W2A8", {"w_bits": 2}),
)
#: Options the random per-layer mixes draw from.
MIX_W_BITS = (2, 4, 8, 16, None)
MIX_ACTS = ("a8", "a16", "dyn8", "float")


def resolve_model(problem: str, model=None):
    """The float model of a problem (or a file) and a description of where it came from.

    Args:
        problem: ``efficientnet-lite0`` or ``digits``.
        model: an ONNX file that overrides ``problem``.

    Returns:
        ``(FloatModel, description)``. Lite0 falls back to digits, and the description says
        why, when the problem suite, torch or the weights are not available.
    """
    from qaev.data import digits_model_path
    from qaev.graph import load_model

    if model:
        return load_model(model), str(model)
    if problem == "efficientnet-lite0":
        try:
            from qaev.problems.efficientnet_lite import lite0_model_path

            path = lite0_model_path()
            return load_model(path), f"efficientnet-lite0 ({path.name})"
        except Exception as exc:  # module, torch or weights missing, or the export failed
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return load_model(digits_model_path()), f"digits (efficientnet-lite0 unavailable: {reason})"
    return load_model(digits_model_path()), "digits (bundled CNN)"


def random_feed(model, batch: int, seed: int) -> dict[str, np.ndarray]:
    """Standard normal float32 inputs of ``model`` with ``batch`` samples (latency does not
    depend on the values)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for name, value in model.inputs.items():
        dims = [d.dim_value if d.dim_value > 0 else batch for d in value.type.tensor_type.shape.dim]
        if dims:
            dims[0] = batch
        feed[name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def noise_quantizer(model, *, batch: int, seed: int, threads: int = 1):
    """A :class:`~qaev.quantize.Quantizer` calibrated on standard normal noise (ranges do
    not change latency)."""
    from qaev.data import ArrayDataset
    from qaev.quantize import Quantizer

    calib = ArrayDataset(inputs=random_feed(model, max(batch, 8), seed), name="normal noise")
    return Quantizer.calibrated(model, calib, persist=False, threads=threads)


def timed_model(quantizer, config, graph: str = "export"):
    """The model to time for ``config`` and which graph it is.

    Args:
        quantizer: the model's quantizer.
        config: the config.
        graph: ``export`` (the file a user ships: native INT4 weights, what the ``host``
            table models) or ``eval`` (the search's evaluation graph).

    Returns:
        ``(model, graph)``; ``export`` falls back to the evaluation graph where
        ``export_model`` fails on the config, and the graph string says so.
    """
    from qaev.quantize import export_model

    if graph == "eval":
        return quantizer.build(config), "eval"
    try:
        return export_model(quantizer, config), "export"
    except Exception as exc:
        return quantizer.build(config), f"eval (export failed: {type(exc).__name__} {exc})"


def fidelity_configs(layers, count: int, *, seed: int, uniform: bool = True, exclude=()) -> list:
    """A diverse, duplicate-free list of ``(label, QuantConfig)`` for whole-model timing.

    The uniform settings of :data:`UNIFORM_SETTINGS` come first (when ``uniform``), then
    random per-layer mixes from a :class:`~qaev.space.SearchSpace` over :data:`MIX_W_BITS`
    and :data:`MIX_ACTS`. Each mix draws a fraction ``f ~ U(0, 1)`` of its layers set to
    W8A8 (the fused integer kernels) and, for the other layers, its own preference over the
    weight and activation options from a Dirichlet(0.6) distribution. So the mixes span
    the range from nearly float to nearly all-integer, as a search's candidates do, and
    range from nearly uniform to evenly spread.

    Args:
        layers: the model's quantizable layers.
        count: how many configs to return (fewer only when the space runs out).
        seed: seed of the random mixes.
        uniform: start with the uniform settings.
        exclude: config keys to leave out (e.g. the configs a benchmark reports on).

    Returns:
        Up to ``count`` pairs of a label and a config, distinct by effective config key.
    """
    from qaev.config import ActMode, LayerConfig
    from qaev.quantize import uniform_config
    from qaev.space import GENES_PER_LAYER, SearchSpace

    seen, out = set(exclude), []

    def add(label, config):
        key = config.key()
        if key not in seen and len(out) < count:
            seen.add(key)
            out.append((label, config))

    if uniform:
        for label, kwargs in UNIFORM_SETTINGS:
            add(label, uniform_config(layers, LayerConfig(**kwargs)))
    space = SearchSpace(layers=layers, w_bits=MIX_W_BITS, acts=MIX_ACTS)
    w_options = list(space.w_bits)
    a_options = list(space.acts)
    rng = np.random.default_rng(seed)
    n_w, n_a, n_layers = len(w_options), len(a_options), len(space.searchable)
    w8 = w_options.index(8)
    a8 = a_options.index((ActMode.STATIC, 8))
    for attempt in range(50 * max(count, 1)):
        if len(out) >= count:
            break
        fraction = rng.uniform()
        p_w, p_a = rng.dirichlet(np.full(n_w, 0.6)), rng.dirichlet(np.full(n_a, 0.6))
        w = rng.choice(n_w, size=n_layers, p=p_w)
        a = rng.choice(n_a, size=n_layers, p=p_a)
        int8 = rng.uniform(size=n_layers) < fraction
        w[int8], a[int8] = w8, a8
        genes = np.zeros(space.n_var, dtype=int)
        for i in range(n_layers):
            w_bits, (mode, a_bits) = w_options[w[i]], a_options[a[i]]
            if mode is ActMode.DYNAMIC and (w_bits is None or w_bits > 8):
                mode = ActMode.FLOAT  # as SearchSpace.decode does
            cfg = LayerConfig(w_bits=w_bits, act=mode, a_bits=a_bits)
            genes[GENES_PER_LAYER * i:GENES_PER_LAYER * (i + 1)] = space.encode_layer(cfg, genes, i)
        add(f"mix{attempt:03d}", space.decode(genes))
    return out


def time_interleaved(models, feed, *, repeats: int, warmup: int = 3, threads: int = 1, seed: int = 0,
                     min_sample_s: float = 2e-3) -> list[list[float]]:
    """Per-run wall times (ms) of several models on one feed, interleaved across repeats.

    Every model gets its own ORT session (:func:`qaev.session.make_session`, the options
    of :func:`qaev.objectives.host_latency_ms`). Each round times every model once, in a
    freshly shuffled order, so background load biases all models alike. A timed sample
    runs the model ``inner`` times back to back, ``inner`` chosen so the fastest model's
    sample lasts about ``min_sample_s`` (timer resolution); times are per run.

    Args:
        models: ONNX models (protos or bytes).
        feed: input name -> array, the same for every model.
        repeats: rounds (timed samples per model).
        warmup: untimed runs per model before the first round.
        threads: ORT intra-op threads.
        seed: seed of the round orders.
        min_sample_s: target duration of the fastest model's sample.

    Returns:
        One list of ``repeats`` per-run times in ms per model.
    """
    from qaev.session import make_session

    sessions = [make_session(m, threads=threads) for m in models]
    feed = dict(feed)
    fastest = float("inf")
    for session in sessions:
        for _ in range(max(warmup, 1)):
            start = time.perf_counter()
            session.run(None, feed)
            fastest = min(fastest, time.perf_counter() - start)
    inner = max(1, int(np.ceil(min_sample_s / max(fastest, 1e-9))))
    rng = np.random.default_rng(seed)
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(repeats):
        for i in rng.permutation(len(sessions)):
            start = time.perf_counter()
            for _ in range(inner):
                sessions[i].run(None, feed)
            times[i].append(1e3 * (time.perf_counter() - start) / inner)
    return times


# ---------------------------------------------------------------- whole-model refit
def with_values(table, *, rates: dict | None = None, **scalars):
    """A copy of ``table`` with some values replaced (units and sources kept).

    Args:
        table: a :class:`~qaev.hardware.HardwareTable`.
        rates: native pair key -> MAC/s.
        **scalars: scalar field (``memory_bandwidth``, ``act_conversion_time``...) -> value.
    """
    from types import MappingProxyType

    changes = {name: dataclasses.replace(getattr(table, name), value=float(v)) for name, v in scalars.items()}
    if rates:
        peak = dict(table.peak_macs_per_s)
        for key, value in rates.items():
            peak[key] = dataclasses.replace(peak[key], value=float(value))
        changes["peak_macs_per_s"] = MappingProxyType(peak)
    return dataclasses.replace(table, **changes)


def cost_features(layers, config, table, *, batch: int = 1) -> dict[str, float]:
    """The terms the cost model sums for ``config``, with the roofline bounds of ``table``.

    ``est_latency_s`` of :func:`qaev.hardware.estimate` equals
    ``sum_p macs:<p> / rate_p + bytes / bandwidth + layers * layer_overhead
    + act_elements * act_conversion_time + weight_elements * weight_conversion_time``,
    so with the bounds held fixed the estimate is linear in the inverse coefficients.

    Returns:
        ``macs:<pair>`` (MACs of compute-bound layers executing each native pair),
        ``bytes`` (bytes of memory-bound layers), ``layers``, ``act_elements``,
        ``weight_elements``, and ``est_s`` (the estimate itself, for checking).
    """
    from qaev.hardware import estimate

    report = estimate(layers, config, table, batch=batch)
    act_only = with_values(table, act_conversion_time=1.0, weight_conversion_time=0.0)
    weight_only = with_values(table, act_conversion_time=0.0, weight_conversion_time=1.0)
    out = {f"macs:{p}": 0.0 for p in table.peak_macs_per_s}
    out.update(bytes=0.0, layers=float(len(report.rows)),
               act_elements=sum(r.conversion_s for r in estimate(layers, config, act_only, batch=batch).rows),
               weight_elements=sum(r.conversion_s for r in estimate(layers, config, weight_only, batch=batch).rows),
               est_s=report.est_latency_ms / 1e3)
    bandwidth = table.memory_bandwidth.value
    for row in report.rows:
        if row.compute_s >= row.memory_s:
            out[f"macs:{row.executed}"] += row.macs
        else:
            out["bytes"] += row.memory_s * bandwidth
    return out


def _terms(table, tied) -> list[tuple[str, dict[str, float]]]:
    """Fittable terms: ``(field, {feature: current seconds per unit})``.

    A term's coefficient is an inverse rate (s per MAC, s per byte) or a time per element;
    a pair tied to another pair shares its term (its MACs join that pair's column).
    """
    terms: dict[str, dict[str, float]] = {}
    for pair, q in table.peak_macs_per_s.items():
        owner = tied.get(pair, pair)
        terms.setdefault(f"peak_macs_per_s.{owner}", {})[f"macs:{pair}"] = 1.0 / q.value
    terms["memory_bandwidth"] = {"bytes": 1.0 / table.memory_bandwidth.value}
    terms["act_conversion_time"] = {"act_elements": table.act_conversion_time.value}
    terms["weight_conversion_time"] = {"weight_elements": table.weight_conversion_time.value}
    return list(terms.items())


def fit_whole_model(samples, table, *, tied=None, min_share: float = 0.02, iterations: int = 10):
    """Least-squares refit of a table's coefficients from whole-model latencies.

    Minimises the relative error of the estimate against the measured latency with
    non-negative least squares over the inverse MAC rate of each native pair, the inverse
    bandwidth, and the activation and weight conversion times. There is no per-model
    constant: every config of a model costs all its layers, so such a constant is collinear
    with the model's MACs at the rates, and the time of ops that are not layers (Add,
    pooling) is absorbed into the rates; ``layer_overhead`` is kept for the same reason.
    A term whose share of the current estimates is below ``min_share``, or whose fit comes
    out zero, cannot be identified from the data and keeps its current value (the other
    terms are fitted around it). Roofline bounds are recomputed with the new coefficients
    until they stop changing.

    Args:
        samples: ``(model_id, layers, config, batch, measured_s)`` tuples (several models
            may be mixed).
        table: the starting :class:`~qaev.hardware.HardwareTable`.
        tied: native pair -> pair whose rate it shares (one fitted rate for both).
        min_share: smallest share of the summed estimates a term needs to be fitted.
        iterations: most bound-update rounds.

    Returns:
        ``(table, info)``: the refitted table and a dict with the fitted fields (MAC/s, B/s,
        s/element), the kept fields and the fit's relative RMS error.
    """
    from scipy.optimize import nnls

    tied = dict(tied or {})
    measured = np.array([s[4] for s in samples], dtype=float)
    weights = 1.0 / measured
    previous_bounds, info = None, {}
    for _ in range(max(iterations, 1)):
        feats = [cost_features(layers, config, table, batch=batch) for _, layers, config, batch, _ in samples]
        terms = _terms(table, tied)
        total = sum(f["est_s"] for f in feats)
        free = [name for name, parts in terms
                if sum(f[k] * c for f in feats for k, c in parts.items()) >= min_share * total]
        while True:
            base = np.array([f["layers"] * table.layer_overhead.value
                             + sum(f[k] * c for name, parts in terms if name not in free for k, c in parts.items())
                             for f in feats])
            x = np.array([[sum(f[k] for k in parts) for name, parts in terms if name in free] for f in feats])
            coef = nnls(x * weights[:, None], (measured - base) * weights)[0] if free else np.zeros(0)
            names = [name for name, _ in terms if name in free]
            zero = [name for name, k in zip(names, coef) if k <= 0.0]
            if not zero:
                break
            free = [name for name in free if name not in zero]
        values = dict(zip(names, coef))
        rates = {pair: 1.0 / values[f"peak_macs_per_s.{tied.get(pair, pair)}"] for pair in table.peak_macs_per_s
                 if f"peak_macs_per_s.{tied.get(pair, pair)}" in values}
        scalars = {name: (1.0 / k if name == "memory_bandwidth" else k) for name, k in values.items()
                   if not name.startswith("peak_macs_per_s.")}
        table = with_values(table, rates=rates, **scalars)
        fitted_s = (x @ coef if len(coef) else 0.0) + base
        info = {
            "fitted": {**{f"peak_macs_per_s.{p}": r for p, r in rates.items()}, **scalars},
            "kept": [name for name, _ in terms if name not in values],
            "tied": tied,
            "relative_rms": float(np.sqrt(np.mean(((fitted_s - measured) / measured) ** 2))),
        }
        bounds = [tuple(r.bound for r in estimate_rows(layers, config, table, batch))
                  for _, layers, config, batch, _ in samples]
        if bounds == previous_bounds:
            break
        previous_bounds = bounds
    return table, info


def estimate_rows(layers, config, table, batch: int):
    """The per-layer rows of :func:`qaev.hardware.estimate`."""
    from qaev.hardware import estimate

    return estimate(layers, config, table, batch=batch).rows


def _whole_model(args) -> dict:
    from scipy.stats import spearmanr

    from qaev.hardware import estimate, load_table

    model, source = resolve_model(args.problem, args.model)
    quantizer = noise_quantizer(model, batch=args.batch, seed=args.seed, threads=args.threads)
    layers = quantizer.layers
    held_out = {c.key() for _, c in fidelity_configs(layers, args.exclude_configs, seed=args.exclude_seed)}
    configs = fidelity_configs(layers, args.configs, seed=args.seed, uniform=False, exclude=held_out)
    saved = {}
    if args.measurements and os.path.isfile(args.measurements):
        with open(args.measurements, encoding="utf-8") as fh:
            saved = {row["key"]: row for row in json.load(fh)["rows"]}
    if all(c.key() in saved for _, c in configs):
        graphs = [saved[c.key()]["graph"] for _, c in configs]
        times = [saved[c.key()]["times_ms"] for _, c in configs]
    else:
        built = [timed_model(quantizer, c, args.graph) for _, c in configs]
        graphs = [g for _, g in built]
        feed = random_feed(model, args.batch, args.seed)
        times = time_interleaved([m for m, _ in built], feed, repeats=args.repeats, threads=args.threads,
                                 seed=args.seed)
        if args.measurements:
            with open(args.measurements, "w", encoding="utf-8") as fh:
                json.dump({"command": args.command, "rows": [
                    {"label": label, "key": c.key(), "graph": g, "times_ms": t}
                    for (label, c), g, t in zip(configs, graphs, times)]}, fh, indent=1)
    measured_s = [statistics.median(t) / 1e3 for t in times]
    start = load_table(args.table)
    samples = [(source, layers, c, args.batch, m) for (_, c), m in zip(configs, measured_s)]
    tied = dict(item.split("=", 1) for item in args.tie)
    table, info = fit_whole_model(samples, start, tied=tied)
    before = [estimate(layers, c, start, batch=args.batch).est_latency_ms for _, c in configs]
    after = [estimate(layers, c, table, batch=args.batch).est_latency_ms for _, c in configs]
    return {
        "command": args.command,
        "model": source,
        "configs": len(configs),
        "held_out": f"the {args.exclude_configs} configs of seed {args.exclude_seed} (benchmark set) excluded",
        "graphs": sorted(set(graphs)),
        "onnxruntime": ort.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        **info,
        "spearman_fit_set_before": float(spearmanr(measured_s, before).statistic),
        "spearman_fit_set_after": float(spearmanr(measured_s, after).statistic),
        "rows": [{"label": label, "measured_ms": 1e3 * m, "est_before_ms": b, "est_after_ms": a}
                 for (label, _), m, b, a in zip(configs, measured_s, before, after)],
    }


def main(argv=None) -> int:
    """``python -m qaev.hardware.fit_host [--whole-model ...]``: print the figures as JSON.

    Without ``--whole-model``: the single-node micro-benchmarks of :func:`measure`. With
    it: time ``--configs`` random mixes of a model (disjoint from the fidelity benchmark's
    configs of ``--exclude-seed``) and refit the table's coefficients by least squares
    (:func:`fit_whole_model`).
    """
    import argparse
    import shlex
    import sys

    parser = argparse.ArgumentParser(prog="python -m qaev.hardware.fit_host", description=main.__doc__)
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
        print(json.dumps(_whole_model(args), indent=2))
    else:
        print(json.dumps(measure(threads=args.threads, repeats=args.repeats or 20, runs=args.runs), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
