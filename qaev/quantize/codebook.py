"""Vector-quantized embedding tables: 2 bits per weight through a learned codebook.

A table ``W`` of shape ``(V, D)`` is stored as one scale per row (its RMS), an 8-bit code
per run of four weights along the row, and 256 four-weight vectors shared by the whole
table: row ``v`` is ``vectors[codes[v]].reshape(D) * scale[v]``. Eight bits per four
weights is the same two bits per weight as a scalar 2-bit grid, but the 256 points are
placed where the weights are (Lloyd's k-means on the scaled four-weight runs) instead of on
a regular grid (Gong et al., "Compressing Deep Convolutional Networks using Vector
Quantization", 2014; Jégou et al., "Product Quantization for Nearest Neighbor Search",
TPAMI 2011). ONNX runs it as plain lookups (:func:`codebook_lookup`), so the evaluated and
the exported graph are the same.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from qaev.data._cache import cache_dir
from qaev.errors import ConfigError
from qaev.files import npz_bytes, read_npz_cache, write_cache
from qaev.model.layers import LayerInfo
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.lookup import decoded_rows, whole_table_lookup

__all__ = ["CodebookWeight", "VECTOR", "CODES", "supports_codebook", "codebook_quantize", "cached_codebook",
           "codebook_lookup"]

#: Weights per code and codebook entries (8-bit codes: 2 bits per weight).
VECTOR = 4
CODES = 256
_FIT_VECTORS = 1 << 18  # k-means learns from this many runs (more changed the error by <1 %)
_ITERATIONS = 25
_CHUNK = 1 << 16


@dataclass(frozen=True)
class CodebookWeight:
    """A vector-quantized table.

    Attributes:
        codes: uint8, ``(V, D / 4)``: the codebook entry of every run of four weights.
        vectors: float32, ``(256, 4)``: the codebook.
        scale: float32, ``(V, 1)``: one scale per row.
    """

    codes: np.ndarray
    vectors: np.ndarray
    scale: np.ndarray

    def dequantize(self) -> np.ndarray:
        """Float32 values exactly as the lookup graph computes them."""
        rows = self.vectors[self.codes.astype(np.int64)].reshape(self.codes.shape[0], -1)
        return (rows * self.scale).astype(np.float32)


def supports_codebook(layer: LayerInfo) -> bool:
    """Whether ``layer`` can take a codebook: a lookup (Gather) into a 2-D table whose rows
    split into runs of four."""
    shape = layer.weight_shape
    return layer.op_type == "Gather" and len(shape) == 2 and int(shape[1]) % VECTOR == 0


def _nearest(x: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Index of the nearest codebook vector for every row of ``x`` (in chunks)."""
    norms = np.einsum("kd,kd->k", vectors, vectors)
    out = np.empty(len(x), np.int64)
    for start in range(0, len(x), _CHUNK):
        part = x[start:start + _CHUNK]
        out[start:start + _CHUNK] = (norms[None] - 2.0 * part @ vectors.T).argmin(axis=1)
    return out


def _kmeans(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means with ``CODES`` centres on a sample of ``x``; empty centres keep
    their place."""
    fit = x[rng.choice(len(x), min(_FIT_VECTORS, len(x)), replace=False)]
    vectors = fit[rng.choice(len(fit), CODES, replace=len(fit) < CODES)].copy()
    for _ in range(_ITERATIONS):
        idx = _nearest(fit, vectors)
        counts = np.bincount(idx, minlength=CODES)
        sums = np.stack([np.bincount(idx, fit[:, j], minlength=CODES) for j in range(VECTOR)], axis=1)
        vectors = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], vectors).astype(np.float32)
    return vectors


def codebook_quantize(w: np.ndarray, *, seed: int = 0) -> CodebookWeight:
    """Vector-quantize table ``w`` ``(V, D)`` (``D`` a multiple of 4).

    Args:
        w: the float table.
        seed: seeds the k-means sample and start (same seed, same codebook).

    Raises:
        ConfigError: ``w`` is not 2-D or its rows do not split into runs of four.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim != 2 or w.shape[1] % VECTOR:
        raise ConfigError(f"codebook: needs a 2-D table with rows a multiple of {VECTOR} long, got shape {w.shape}")
    scale = np.sqrt(np.mean(np.square(w), axis=1, keepdims=True)).astype(np.float32)
    scale = np.where(scale > 0, scale, np.float32(1.0))
    runs = (w / scale).reshape(-1, VECTOR)
    vectors = _kmeans(runs, np.random.default_rng(seed))
    codes = _nearest(runs, vectors).astype(np.uint8).reshape(w.shape[0], -1)
    return CodebookWeight(codes=codes, vectors=vectors, scale=scale)


def _cache_path(w: np.ndarray, seed: int) -> Path:
    digest = hashlib.sha256()
    digest.update(repr((w.shape, seed, VECTOR, CODES, _FIT_VECTORS, _ITERATIONS)).encode())
    digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return cache_dir("codebook") / f"{digest.hexdigest()[:32]}.npz"


def cached_codebook(w: np.ndarray, *, seed: int = 0) -> CodebookWeight:
    """:func:`codebook_quantize`, kept on disk under ``$QAEV_CACHE/codebook`` by the table's
    contents and the fit's settings (k-means takes seconds on a large table; every search
    worker would repeat it). A file that cannot be read is recomputed and replaced."""
    path = _cache_path(w, seed)
    kept = read_npz_cache(path)
    if kept is not None and {"codes", "vectors", "scale"} <= kept.keys():
        return CodebookWeight(codes=kept["codes"], vectors=kept["vectors"], scale=kept["scale"])
    cw = codebook_quantize(w, seed=seed)
    write_cache(path, npz_bytes(codes=cw.codes, vectors=cw.vectors, scale=cw.scale))  # whole files only
    return cw


def codebook_lookup(ed: GraphEditor, node: onnx.NodeProto, cw: CodebookWeight, *, name: str) -> None:
    """Replace lookup ``node`` (``Gather(table, ids)``) by a lookup into ``cw`` decoded whole
    (every row's codes, their vectors, joined into rows and multiplied by the rows' scales) by
    operators folded at session load (:func:`~qaev.quantize.lookup.whole_table_lookup`)."""

    def decode(ids: str) -> str:
        rows = decoded_rows(ed, ids, ed.add_init(f"{name}.codes", cw.codes), ed.add_init(f"{name}.vectors", cw.vectors),
                            cw.codes.shape[1] * VECTOR, name=name)
        scales, table = ed.fresh(f"{name}.scales"), ed.fresh(f"{name}.table")
        ed.add_node("Gather", [ed.add_init(f"{name}.scale", cw.scale), ids], [scales], name=f"{name}.GatherScales")
        ed.add_node("Mul", [rows, scales], [table], name=f"{name}.Mul")
        return table

    whole_table_lookup(ed, node, cw.codes.shape[0], decode, name=name)
