"""Building and timing whole-model configs on this host (shared by the ``host`` refit and
``benchmarks/cost_model_fidelity.py``)."""
from __future__ import annotations

import time

import numpy as np

__all__ = ["resolve_model", "random_feed", "noise_quantizer", "timed_model", "fidelity_configs",
           "time_interleaved", "UNIFORM_SETTINGS", "MIX_W_BITS", "MIX_ACTS"]

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
    from qaev.model.graph import load_model

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
    random per-layer mixes from a :class:`~qaev.search.space.SearchSpace` over :data:`MIX_W_BITS`
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
    from qaev.config import LayerConfig
    from qaev.quantize import uniform_config
    from qaev.search.space import SearchSpace

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
    rng = np.random.default_rng(seed)
    for attempt in range(50 * max(count, 1)):
        if len(out) >= count:
            break
        add(f"mix{attempt:03d}", space.decode(_mix_genes(space, rng)))
    return out


def _mix_genes(space, rng: np.random.Generator) -> np.ndarray:
    """The genes of one random per-layer mix of ``space`` (see :func:`fidelity_configs`):
    a fraction of the layers at W8A8, the others drawn from the mix's own Dirichlet(0.6)
    preference over the weight and activation options."""
    from qaev.config import ActMode, LayerConfig

    w_options = list(space.w_bits)
    a_options = list(space.acts)
    n_w, n_a, n_layers = len(w_options), len(a_options), len(space.searchable)
    w8 = w_options.index(8)
    a8 = a_options.index((ActMode.STATIC, 8))
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
        genes[space.genome.layer(i)] = space.encode_layer(cfg, genes, i)
    return genes


def time_interleaved(models, feed, *, repeats: int, warmup: int = 3, threads: int = 1, seed: int = 0,
                     min_sample_s: float = 2e-3) -> list[list[float]]:
    """Per-run wall times (ms) of several models on one feed, interleaved across repeats.

    Every model gets its own ORT session (:func:`qaev.model.session.make_session`, the options
    of :func:`qaev.search.objectives.host_latency_ms`). Each round times every model once, in a
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
    from qaev.model.session import make_session

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


