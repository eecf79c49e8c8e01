"""Layer-input statistics for data-aware rounding and bias correction.

One ONNX Runtime pass over (a prefix of) the calibration data fetches every weight
layer's input and accumulates, per layer and convolution group, the second moment
``E[x x^T]`` of its input rows (the Hessian of the layer's squared output error up to a
factor 2, used by :mod:`qaev.quantize.rounding.gptq`) and the mean ``E[x]`` (used by
:mod:`qaev.quantize.bias_correction`). Rows are the input vectors each output is a dot
product with: the rows of a Gemm/MatMul input, the im2col patches of a Conv (padding
zeros included, so the statistics match what the convolution sees). Where the feed carries
an ``attention_mask`` ``[batch, tokens]``, rows of padded token positions are left out of
``[batch, tokens, n]`` inputs: they hold no sentence and the model's pooling ignores them.

:class:`LayerInputs` computes them lazily, the first time a config asks for non-nearest
rounding or bias correction, and persists them as ``.npz`` (no pickle) next to the
calibration statistics, keyed by model hash and data hash.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view

from qaev.errors import ConfigError, DataError, ModelError
from qaev.files import npz_bytes, write_cache
from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo
from qaev.quantize.rounding.groups import supports_data_aware

__all__ = ["InputStats", "LayerInputs", "collect_layer_inputs", "im2col", "layer_rows", "batch_rows", "fetch_session",
           "RowMoments"]

_FORMAT_VERSION = 2  # 2: padded token positions left out
#: Default cap on the calibration samples behind the statistics. It was 256: on MiniLM
#: (STS-B sentences of ~11 tokens) that gave 2.6-4k input rows for layers of 384 and 1536
#: inputs, and uniform 2-bit GPTQ weights lost 5.49 Spearman points on test from 2647 rows
#: (more than round-to-nearest), 1.30 from 1400 sentences' 22522 rows
#: (benchmarks/RESULTS.md, "How many calibration rows GPTQ needs").
MAX_SAMPLES = 2048
_CHUNK = 1 << 22  # values per float64 accumulation step (bounds the temporaries at ~32 MB)


@dataclass(frozen=True)
class InputStats:
    """Input statistics of one layer.

    Attributes:
        hessian: ``(G, n, n)`` float64, ``E[x x^T]`` over the input rows of each group.
        mean: ``(G, n)`` float64, ``E[x]``.
        rows: number of rows averaged.
    """

    hessian: np.ndarray
    mean: np.ndarray
    rows: int

    @property
    def groups(self) -> int:
        """Independent groups (convolution groups; 1 for Gemm/MatMul)."""
        return int(self.hessian.shape[0])


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(attrs: dict, spatial: Sequence[int], kernel: Sequence[int], strides, dilations) -> list[int]:
    nd = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
            small = total // 2
            begin.append(small if auto == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        return begin + end
    if auto == "VALID":
        return [0] * (2 * nd)
    return list(attrs.get("pads", [0] * (2 * nd)))


def im2col(x: np.ndarray, node: onnx.NodeProto, weight_shape: Sequence[int]) -> np.ndarray:
    """Convolution input ``x`` ``(N, C, *spatial)`` as rows ``(G, N * out_positions, C/G * k)``.

    Handles ``strides``, ``dilations``, ``pads``/``auto_pad`` and ``group`` of any spatial
    rank; each row's layout is ``(channel in group, *kernel offsets)``, matching the
    weight's ``(Cout, C/G, *kernel)`` flattening.
    """
    attrs = _attrs(node)
    kernel = list(weight_shape[2:])
    nd = len(kernel)
    strides = list(attrs.get("strides", [1] * nd))
    dilations = list(attrs.get("dilations", [1] * nd))
    group = int(attrs.get("group", 1))
    pads = _pads(attrs, x.shape[2:], kernel, strides, dilations)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilations)]
    win = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)
              + tuple(slice(None, None, d) for d in dilations)]
    n, c = x.shape[:2]
    out = win.shape[2:2 + nd]
    win = win.reshape(n, group, c // group, *out, *kernel)
    order = (1, 0, *range(3, 3 + nd), 2, *range(3 + nd, 3 + 2 * nd))
    return win.transpose(order).reshape(group, -1, (c // group) * int(np.prod(kernel)))


def layer_rows(x: np.ndarray, layer: LayerInfo, node: onnx.NodeProto) -> np.ndarray:
    """The input rows ``(G, rows, n)`` of ``layer`` for its input batch ``x``."""
    if layer.op_type == "Conv":
        return im2col(x, node, layer.weight_shape)
    n = layer.weight_shape[layer.reduce_axis]
    return x.reshape(1, -1, n)


def batch_rows(x: np.ndarray, layer: LayerInfo, node: onnx.NodeProto, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    """The input rows ``(G, rows, n)`` of ``layer`` for its input ``x`` on ``feed``, without
    the rows of padded token positions where ``feed`` has an ``attention_mask``."""
    x = np.asarray(x, np.float32)
    mask = _token_mask(feed)
    if mask is not None and layer.op_type != "Conv" and x.ndim == 3 and x.shape[:2] == mask.shape:
        x = x[mask]
    return layer_rows(x, layer, node)


class RowMoments:
    """Running sums over input rows ``(G, rows, n)``: ``x x^T`` and ``x``, and with paired
    rows ``y`` (the same positions seen by another model) also ``x y^T`` and ``y``."""

    def __init__(self) -> None:
        self.h = self.s = self.cross = self.s_paired = None
        self.rows = 0

    def add(self, rows: np.ndarray, paired: np.ndarray | None = None) -> None:
        g, r, n = rows.shape
        if self.h is None:
            self.h, self.s = np.zeros((g, n, n)), np.zeros((g, n))
            if paired is not None:
                self.cross, self.s_paired = np.zeros((g, n, n)), np.zeros((g, n))
        step = max(1, _CHUNK // (g * n))
        for start in range(0, r, step):
            part = rows[:, start:start + step].astype(np.float64)
            part_t = np.swapaxes(part, 1, 2)
            self.h += part_t @ part
            self.s += part.sum(axis=1)
            if paired is not None:
                other = paired[:, start:start + step].astype(np.float64)
                self.cross += part_t @ other
                self.s_paired += other.sum(axis=1)
        self.rows += r

    def stats(self) -> InputStats:
        return InputStats(hessian=self.h / self.rows, mean=self.s / self.rows, rows=self.rows)


def fetch_session(proto: onnx.ModelProto, tensors: Sequence[str], *, threads: int = 1):
    """An ONNX Runtime session of ``proto`` that can fetch ``tensors``, and the set of those
    that are model inputs (read from the feed instead).

    Raises:
        ModelError: a name is not an activation of the graph, or the session cannot be created.
    """
    import onnxruntime as ort

    from qaev.quantize.calibration.stats import _augment

    augmented, from_feed = _augment(proto, list(tensors))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    try:
        sess = ort.InferenceSession(augmented.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types
        raise ModelError(f"cannot create an ONNX Runtime session: {exc}") from None
    return sess, from_feed


def collect_layer_inputs(model: FloatModel, layers: Sequence[LayerInfo], batches: Iterable[Mapping[str, np.ndarray]],
                         *, threads: int = 1) -> dict[str, InputStats]:
    """One ORT pass over ``batches``: :class:`InputStats` of every layer in ``layers`` that
    :func:`~qaev.quantize.rounding.gptq.supports_data_aware`.

    Raises:
        DataError: no batches, or a batch the model rejects.
        ModelError: the session cannot be created.
    """
    chosen = [layer for layer in layers if supports_data_aware(layer)]
    nodes = {n.name: n for n in model.proto.graph.node}
    tensors = list(dict.fromkeys(layer.act_inputs[0] for layer in chosen))
    if not tensors:
        return {}
    sess, from_feed = fetch_session(model.proto, tensors, threads=threads)
    fetch = [t for t in tensors if t not in from_feed]
    acc = {layer.name: RowMoments() for layer in chosen}
    done = 0
    for batch in batches:
        try:
            values = dict(zip(fetch, sess.run(fetch, dict(batch)))) if fetch else {}
        except Exception as exc:
            raise DataError(f"layer-input batch {done}: the model rejected it: {exc}") from None
        values.update({t: np.asarray(batch[t]) for t in from_feed})
        for layer in chosen:
            acc[layer.name].add(batch_rows(values[layer.act_inputs[0]], layer, nodes[layer.name], batch))
        done += 1
    if done == 0:
        raise DataError("layer-input statistics: calibration data is empty")
    return {name: a.stats() for name, a in acc.items()}


def _token_mask(feed: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The ``attention_mask`` feed as a boolean ``[batch, tokens]`` array, if there is one."""
    mask = feed.get("attention_mask")
    if mask is None or np.ndim(mask) != 2:
        return None
    return np.asarray(mask) != 0


def _data_key(batches: Sequence[Mapping[str, np.ndarray]]) -> str:
    digest = hashlib.sha256()
    for feed in batches:
        for name in sorted(feed):
            arr = np.ascontiguousarray(feed[name])
            digest.update(name.encode() + str(arr.dtype).encode() + str(arr.shape).encode() + arr.tobytes())
    return digest.hexdigest()[:16]


def save_stats(stats: Mapping[str, InputStats], path: Path) -> None:
    """Write ``stats`` to ``path`` atomically (``.npz``, arrays plus one JSON string)."""
    names = list(stats)
    arrays = {f"h{i}": stats[n].hessian for i, n in enumerate(names)}
    arrays.update({f"m{i}": stats[n].mean for i, n in enumerate(names)})
    meta = {"version": _FORMAT_VERSION, "layers": names, "rows": [stats[n].rows for n in names]}
    write_cache(path, npz_bytes(meta=np.array(json.dumps(meta)), **arrays))


def load_stats(path: Path) -> dict[str, InputStats]:
    """Read a file written by :func:`save_stats`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("version") != _FORMAT_VERSION:
                raise ValueError(f"version {meta.get('version')!r}")
            return {n: InputStats(hessian=data[f"h{i}"], mean=data[f"m{i}"], rows=int(meta["rows"][i]))
                    for i, n in enumerate(meta["layers"])}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a layer-input statistics file ({exc})") from None


class LayerInputs:
    """Lazily collected, persisted :class:`InputStats` of a model's weight layers.

    Args:
        model: the float model.
        layers: its layers.
        calib: calibration dataset (anything with ``batches(batch_size=...)``).
        max_samples: at most this many leading samples are used (default: every sample of
            a calibration set up to 2048; a second-order rounding of a wide layer needs many
            more input rows than it has inputs, see :data:`MAX_SAMPLES`).
        batch_size: samples per ORT run (the model's fixed batch wins).
        cache: folder for the persisted ``.npz``; None keeps the statistics in memory only.
        threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, model: FloatModel, layers: Sequence[LayerInfo], calib, *, max_samples: int = MAX_SAMPLES,
                 batch_size: int = 8, cache: Path | None = None, threads: int = 1) -> None:
        self.model, self.layers, self.calib = model, list(layers), calib
        self.max_samples, self.threads = max_samples, threads
        self.batch_size = model.fixed_batch or batch_size
        self.cache = cache
        self.path: Path | None = None
        self._stats: dict[str, InputStats] | None = None

    def batches(self) -> list[dict[str, np.ndarray]]:
        """The calibration batches the statistics come from (at most ``max_samples`` samples)."""
        out, seen = [], 0
        for batch in self.calib.batches(batch_size=self.batch_size):
            if seen >= self.max_samples:
                break
            whole = self.model.fixed_batch or getattr(self.calib, "feeds", False)  # never cut a fixed shape
            n = 1 if getattr(self.calib, "feeds", False) else len(next(iter(batch.values())))
            take = n if whole else min(n, self.max_samples - seen)
            out.append(batch if whole else {k: v[:take] for k, v in batch.items()})
            seen += take
        return out

    def _load_or_collect(self) -> dict[str, InputStats]:
        batches = self.batches()
        if self.cache is not None:
            self.path = self.cache / f"{self.model.sha256[:16]}-{_data_key(batches)}.inputs.npz"
            if self.path.is_file():
                try:
                    stats = load_stats(self.path)
                    wanted = {layer.name for layer in self.layers if supports_data_aware(layer)}
                    if wanted <= set(stats):
                        return stats
                except DataError:  # a corrupt cache is recomputed, never trusted
                    pass
        stats = collect_layer_inputs(self.model, self.layers, batches, threads=self.threads)
        if self.path is not None:
            save_stats(stats, self.path)
        return stats

    def get(self, layer: LayerInfo) -> InputStats:
        """Statistics of ``layer`` (the first call collects or loads all of them).

        Raises:
            ConfigError: the layer does not support data-aware rounding or bias correction.
        """
        if self._stats is None:
            self._stats = self._load_or_collect()
        try:
            return self._stats[layer.name]
        except KeyError:
            raise ConfigError(f"layers.{layer.name}: data-aware rounding and bias correction apply to "
                              f"Conv/Gemm/MatMul layers with 2-D weights, not this {layer.op_type}") from None
