"""Activation calibration: one pass over the data, ranges for every method from histograms.

:meth:`ActivationStats.collect` runs the model once per batch and keeps, per float tensor,
the exact min and max and ``bins`` equal bins over ``[-R, R]``. ``R`` starts at the first
batch's largest magnitude and doubles when a later batch exceeds it, merging bin pairs into
the middle half, so the counts equal a direct histogram of all values over the final range
(raw activations are never kept; ``max |x|`` always lies in the outer half of ``[0, R]``).
Ranges for any :class:`~qaev.config.CalibMethod` and bit width are then derived without
re-running the model, memoised, and persisted by :meth:`ActivationStats.save`.

Example:
    >>> stats = ActivationStats.collect(model, ["relu1", "add3"], batches)  # doctest: +SKIP
    >>> stats.range("relu1", CalibMethod.ENTROPY, 8)  # doctest: +SKIP
"""
from __future__ import annotations

import json
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx

from qaev.config import CalibMethod
from qaev.quantize.calibration.registry import calibration_entry, get_calibration
from qaev.errors import ConfigError, DataError, ModelError
from qaev.files import npz_bytes, write_cache

__all__ = ["ActivationStats"]

_FORMAT_VERSION = 1
_CHUNK = 1 << 20  # values binned per vectorised step (bounds the float64 temporaries)


class _Hist:
    """Exact min/max plus a doubling histogram over ``[-radius, radius]``."""

    def __init__(self, bins: int) -> None:
        self.counts = np.zeros(bins, dtype=np.int64)
        self.radius, self.lo, self.hi = 0.0, np.inf, -np.inf  # radius 0 until the first value

    def add(self, x: np.ndarray, name: str, batch: int) -> None:
        if x.dtype.kind != "f":
            raise ModelError(f"tensor {name!r} has dtype {x.dtype}; only float tensors can be calibrated")
        bad = x.size - int(np.count_nonzero(np.isfinite(x)))
        if bad:
            raise DataError(f"tensor {name!r} has {bad} non-finite value(s) in calibration batch {batch}")
        bins, flat = self.counts.size, x.reshape(-1)
        for start in range(0, flat.size, _CHUNK):
            v = flat[start:start + _CHUNK].astype(np.float64)
            lo, hi = float(v.min()), float(v.max())
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
            amax = max(-lo, hi)
            if self.radius == 0.0:
                self.radius = amax if amax > 0 else float(np.finfo(np.float32).tiny)
            while amax > self.radius:  # double: merge pairs into the middle half
                merged = self.counts.reshape(-1, 2).sum(axis=1)
                self.counts = np.zeros(bins, dtype=np.int64)
                self.counts[bins // 4: 3 * bins // 4] = merged
                self.radius *= 2.0
            idx = np.floor((v + self.radius) * (bins / (2.0 * self.radius))).astype(np.int64)
            np.clip(idx, 0, bins - 1, out=idx)
            self.counts += np.bincount(idx, minlength=bins)

    def folded(self) -> np.ndarray:
        """Histogram of ``|x|``: ``bins // 2`` bins over ``[0, radius]``."""
        half = self.counts.size // 2
        return self.counts[half:] + self.counts[:half][::-1]


class ActivationStats:
    """Per-tensor activation statistics and the calibrated ranges derived from them.

    Build with :meth:`collect` or :meth:`load`; the constructor is internal.
    """

    def __init__(self, hists: Mapping[str, _Hist], *, bins: int, memo: Mapping | None = None) -> None:
        self._hists, self._bins = dict(hists), bins
        self._memo: dict[tuple, tuple[float, float]] = dict(memo or {})

    @classmethod
    def collect(
        cls, model: onnx.ModelProto, tensors: Sequence[str], batches: Iterable[Mapping[str, np.ndarray]],
        *, bins: int = 2048, threads: int = 1, progress: Callable[[int], None] | None = None,
    ) -> "ActivationStats":
        """Run ``model`` once over ``batches`` and histogram every tensor in ``tensors``.

        Args:
            model: the float model (not modified; a copy gets the extra outputs).
            tensors: names of float activation tensors (graph inputs and outputs allowed).
            batches: feed dicts ``{input name: array}``; each is run exactly once.
            bins: histogram bins, a multiple of 4 and at least 16.
            threads: ONNX Runtime intra-op threads.
            progress: called with the number of batches done after each batch.

        Raises:
            ModelError: a name is not an activation of the graph or not a float tensor, or
                the session cannot be created.
            DataError: no batches, a batch the model rejects, or non-finite values.
            ConfigError: bad ``bins``/``threads`` or an empty tensor list.
        """
        _check_bins(bins)
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads: expected a positive integer, got {threads!r}")
        names = list(dict.fromkeys(tensors))
        if not names:
            raise ConfigError("tensors: no activation tensors to calibrate")
        augmented, from_feed = _augment(model, names)
        fetch = [n for n in names if n not in from_feed]
        sess = _session(augmented, threads)
        hists = {n: _Hist(bins) for n in names}
        done = 0
        for batch in batches:
            try:
                values = dict(zip(fetch, sess.run(fetch, dict(batch)))) if fetch else {}
            except Exception as exc:  # InvalidArgument, RuntimeException, ...
                raise DataError(f"calibration batch {done}: the model rejected it: {exc}") from None
            for name in from_feed:
                if name not in batch:
                    raise DataError(f"calibration batch {done}: missing input {name!r}")
                values[name] = batch[name]
            for name in names:
                hists[name].add(np.asarray(values[name]), name, done)
            done += 1
            if progress is not None:
                progress(done)
        if done == 0:
            raise DataError("calibration data is empty")
        return cls._finished(hists, bins)

    @classmethod
    def from_arrays(cls, values: Mapping[str, np.ndarray], *, bins: int = 2048) -> "ActivationStats":
        """Statistics of arrays already at hand (tensor name -> all its values)."""
        _check_bins(bins)
        hists = {name: _Hist(bins) for name in values}
        for name, x in values.items():
            hists[name].add(np.asarray(x), name, 0)
        return cls._finished(hists, bins)

    @classmethod
    def _finished(cls, hists: Mapping[str, _Hist], bins: int) -> "ActivationStats":
        empty = [n for n, h in hists.items() if h.radius == 0.0]
        if empty:
            raise DataError(f"tensor {empty[0]!r} produced no values over the calibration data")
        return cls(hists, bins=bins)

    @property
    def tensors(self) -> tuple[str, ...]:
        """Names of the tracked tensors, in collection order."""
        return tuple(self._hists)

    @property
    def memo(self) -> Mapping[tuple, tuple[float, float]]:
        """Read-only view of the memoised ranges (restored by :meth:`load`)."""
        return MappingProxyType(self._memo)

    def minmax(self, tensor: str) -> tuple[float, float]:
        """Exact ``(min, max)`` of ``tensor`` over the calibration data."""
        h = self._hist(tensor)
        return float(h.lo), float(h.hi)

    def histogram(self, tensor: str) -> tuple[np.ndarray, float]:
        """A copy of the counts of ``tensor`` and the radius ``R`` they span ``[-R, R]``."""
        h = self._hist(tensor)
        return h.counts.copy(), float(h.radius)

    def range(
        self, tensor: str, method: CalibMethod | str, bits: int, *, symmetric: bool = False,
        percentile: float = 99.99,
    ) -> tuple[float, float]:
        """The calibrated ``(lo, hi)`` of ``tensor``, memoised; always ``lo <= 0 <= hi``.

        All methods clamp to the exact min/max; ``symmetric`` gives ``(-t, t)``.

        * ``minmax``: exact min and max (symmetric: largest magnitude).
        * ``percentile``: the ``(100 - p) / 2`` % and ``(100 + p) / 2`` % quantiles, so each
          clipped tail holds ``(100 - p) / 2`` % of the values (symmetric: the ``p`` %
          quantile of ``|x|``); linear within a bin; ``p = 100`` is exactly ``minmax``.
        * ``entropy``: the window minimising KL(P || Q) between the clipped histogram and
          its quantized version (Migacz, "8-bit Inference with TensorRT", GTC 2017), with
          ``2**(bits-1)`` levels on ``|x|`` if symmetric, else ``2**bits``; for data of
          both signs ``lo`` and ``hi`` are found by two alternating 1-D passes. Windows end
          on bin edges and span at least one bin per level, so the resolution is limited
          by ``bins``; when the occupied bins are no more than the levels (e.g. >= 11 bits
          at 2048 bins) nothing can be resolved and the result is ``minmax``.
        * ``mse``: the clip minimising the squared error estimated from bin centres:
          ``step**2 / 12`` per value inside plus the squared distance of clipped values,
          ``step = (hi - lo) / (2**bits - 1)``. Every bin edge between zero and min/max
          (2-D over ``lo`` and ``hi`` when asymmetric) and min/max itself are candidates.

        Neither entropy nor MSE is monotone in ``bits`` by construction; MSE ranges usually
        widen with more bits (rare outliers are kept once rounding noise costs more).

        Args:
            tensor: a tracked tensor name.
            method: a :class:`CalibMethod` or its value.
            bits: activation bit width, 2 to 16.
            symmetric: return ``(-t, t)``.
            percentile: for ``percentile`` only, in ``(0, 100]``.

        Raises:
            DataError: ``tensor`` was not collected.
            ConfigError: bad method, bits or percentile.
        """
        key = self._key(tensor, method, bits, symmetric, percentile)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = _compute(self._hist(tensor), *key[1:])
        return hit

    def ranges(
        self, tensors: Iterable[str], method: CalibMethod | str, bits: int, *, symmetric: bool = False,
        percentile: float = 99.99,
    ) -> dict[str, tuple[float, float]]:
        """:meth:`range` for several tensors at once, as ``{name: (lo, hi)}``."""
        return {t: self.range(t, method, bits, symmetric=symmetric, percentile=percentile) for t in tensors}

    def save(self, path) -> None:
        """Write histograms, min/max and the memo to one ``.npz`` file at exactly ``path``,
        atomically (a cache: a failed write is a warning).

        No pickle: arrays plus one JSON string (tensor names, bins, memoised ranges).
        """
        hs = [self._hists[n] for n in self.tensors]
        memo = [[*k, lo, hi] for k, (lo, hi) in self._memo.items()]
        meta = {"version": _FORMAT_VERSION, "bins": self._bins, "tensors": list(self.tensors), "memo": memo}
        write_cache(path, npz_bytes(
            counts=np.stack([h.counts for h in hs]), radius=np.array([h.radius for h in hs]),
            lo=np.array([h.lo for h in hs]), hi=np.array([h.hi for h in hs]), meta=np.array(json.dumps(meta))))

    @classmethod
    def load(cls, path) -> "ActivationStats":
        """Read a file written by :meth:`save`."""
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                counts, radius, lo, hi = (data[k] for k in ("counts", "radius", "lo", "hi"))
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{path}: not a calibration statistics file ({exc})") from None
        if meta.get("version") != _FORMAT_VERSION:
            raise DataError(f"{path}: unsupported statistics version {meta.get('version')!r}")
        hists = {name: _Hist(meta["bins"]) for name in meta["tensors"]}
        for i, h in enumerate(hists.values()):
            h.counts, h.radius = counts[i].astype(np.int64), float(radius[i])
            h.lo, h.hi = float(lo[i]), float(hi[i])
        memo = {tuple(row[:5]): (float(row[5]), float(row[6])) for row in meta["memo"]}
        return cls(hists, bins=meta["bins"], memo=memo)

    def _hist(self, tensor: str) -> _Hist:
        try:
            return self._hists[tensor]
        except KeyError:
            raise DataError(f"no calibration statistics for tensor {tensor!r}") from None

    def _key(self, tensor, method, bits, symmetric, percentile) -> tuple:
        try:
            method = CalibMethod(method)
        except ValueError:
            allowed = ", ".join(m.value for m in CalibMethod)
            raise ConfigError(f"method: {method!r} is not one of {allowed}") from None
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
            raise ConfigError(f"bits: expected an integer in 2..16, got {bits!r}")
        if calibration_entry(method).uses_percentile and not 0.0 < float(percentile) <= 100.0:
            raise ConfigError(f"percentile: expected a value in (0, 100], got {percentile!r}")
        entry = calibration_entry(method)
        bits = int(bits) if entry.uses_bits else None
        pct = float(percentile) if entry.uses_percentile else None
        return (tensor, method.value, bits, bool(symmetric), pct)


def _check_bins(bins) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 16 or bins % 4:
        raise ConfigError(f"bins: expected a multiple of 4 of at least 16, got {bins!r}")


def _session(model: onnx.ModelProto, threads: int):
    """A float session at the basic optimisation level (fetched tensors keep their names)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    try:
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types
        raise ModelError(f"cannot create an ONNX Runtime session: {exc}") from None


def _augment(model: onnx.ModelProto, names: list[str]) -> tuple[onnx.ModelProto, set[str]]:
    """Copy ``model`` with ``names`` as outputs; return it and the names read from the feed."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    try:
        m = onnx.shape_inference.infer_shapes(m)
    except Exception:  # inference is only for types; fall back to declared value_info
        pass
    g, inits = m.graph, {t.name for t in m.graph.initializer}
    types = {vi.name: vi for vi in [*g.value_info, *g.input, *g.output]}
    feeds, outputs = {i.name for i in g.input} - inits, {o.name for o in g.output}
    produced = {o for node in g.node for o in node.output if o}
    for name in names:
        if name not in produced and name not in feeds:
            what = "a constant initializer" if name in inits else "not a tensor of the graph"
            raise ModelError(f"tensor {name!r} is {what}; only activations can be calibrated")
        if name not in feeds and name not in outputs:  # typed where inference knows the type
            g.output.append(types.get(name, onnx.ValueInfoProto(name=name)))
    return m, {n for n in names if n in feeds}


def _compute(h: _Hist, method: str, bits, symmetric: bool, pct) -> tuple[float, float]:
    out = get_calibration(method).range(h, bits=bits, symmetric=symmetric, percentile=pct)
    return min(float(out[0]), 0.0), max(float(out[1]), 0.0)
