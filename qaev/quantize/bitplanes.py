"""3- and 6-bit weights stored at their own width, as bit planes.

ONNX has no 3- or 6-bit type: stored as INT4 or INT8, such weights take a third more
bytes than their bits. Here a ``b``-bit weight's values, as ``b``-bit two's complement,
are split into ``b`` planes of one bit each, each plane packed eight values a byte (lowest
first). The graph rebuilds the int8 weight from constants only: the plane bytes index a
table of every byte value's eight bits; weighted by ``2^p`` per plane (the top plane by
``-2^(b-1)``) and summed over the planes, cast to int8 and reshaped, they are the original
tensor. Every input is a constant, so ONNX Runtime folds this subgraph when the session
loads, with the folded dequantization after it (:mod:`qaev.quantize.folded`): the layer
runs on the same float weight as evaluated.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto

from qaev.quantize.graph_edit import GraphEditor

__all__ = ["PLANE_BITS", "pack_planes", "unpack_planes", "planes_tensor"]

#: Weight widths stored as bit planes (2 and 4 bits have ONNX types of their own).
PLANE_BITS = (3, 6)


def pack_planes(q: np.ndarray, bits: int) -> np.ndarray:
    """``(bits, ceil(n / 8))`` uint8: plane ``p`` holds bit ``p`` of every value of ``q``
    (flattened) in ``bits``-bit two's complement, eight values a byte, lowest first, the
    last byte padded with zeros."""
    u = np.asarray(q).reshape(-1).astype(np.int16) & ((1 << bits) - 1)
    return np.stack([np.packbits((u >> p) & 1, bitorder="little") for p in range(bits)])


def _plane_weights(bits: int) -> np.ndarray:
    """What a set bit of each plane is worth: ``2^p``, the top plane ``-2^(bits-1)``."""
    weights = 1 << np.arange(bits, dtype=np.int32)
    weights[-1] = -weights[-1]
    return weights


def unpack_planes(planes: np.ndarray, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`pack_planes`: the int8 tensor of ``shape``."""
    n = int(np.prod(shape))
    weights = _plane_weights(bits)
    q = sum(np.unpackbits(planes[p], bitorder="little")[:n].astype(np.int16) * weights[p] for p in range(bits))
    return q.astype(np.int8).reshape(shape)


def _byte_bits() -> np.ndarray:
    """``(256, 8)`` int32: the bits of every byte value, lowest first (8 KB, one per model)."""
    return ((np.arange(256)[:, None] >> np.arange(8)[None, :]) & 1).astype(np.int32)


def planes_tensor(ed: GraphEditor, q: np.ndarray, bits: int, *, name: str) -> str:
    """Add ``q`` (int8, values on a signed ``bits``-bit grid) as bit planes and the
    constant subgraph that rebuilds it; returns the name of the rebuilt int8 tensor."""
    planes = pack_planes(q, bits)
    index = ed.fresh(f"{name}.plane_index")
    ed.add_node("Cast", [ed.add_init(f"{name}.planes", planes)], [index], name=f"{name}.CastPlanes",
                to=TensorProto.INT32)
    plane_bits = ed.fresh(f"{name}.plane_bits")
    ed.add_node("Gather", [ed.shared_init("byte_bits", _byte_bits), index], [plane_bits],
                name=f"{name}.GatherBits")  # (bits, bytes, 8)
    weighted = ed.fresh(f"{name}.plane_weighted")
    ed.add_node("Mul", [plane_bits,
                        ed.shared_init(f"plane_weights{bits}", lambda: _plane_weights(bits)[:, None, None])],
                [weighted], name=f"{name}.WeighPlanes")
    summed = ed.fresh(f"{name}.plane_sum")
    ed.add_node("ReduceSum", [weighted, ed.shared_init("plane_axis", lambda: np.array([0], np.int64))], [summed],
                name=f"{name}.SumPlanes", keepdims=0)
    if q.size % 8:  # drop the last byte's padding
        flat = ed.fresh(f"{name}.plane_flat")
        ed.add_node("Reshape", [summed, ed.shared_init("flat_shape", lambda: np.array([-1], np.int64))], [flat],
                    name=f"{name}.Flatten")
        summed = ed.fresh(f"{name}.plane_values")
        ed.add_node("Slice", [flat, ed.shared_init("slice_start", lambda: np.array([0], np.int64)),
                              ed.add_init(f"{name}.slice_end", np.array([q.size], np.int64))], [summed],
                    name=f"{name}.DropPadding")
    narrow = ed.fresh(f"{name}.plane_int8")
    ed.add_node("Cast", [summed], [narrow], name=f"{name}.CastInt8", to=TensorProto.INT8)
    out = ed.fresh(f"{name}.unpacked")
    ed.add_node("Reshape", [narrow, ed.add_init(f"{name}.shape", np.array(q.shape, np.int64))], [out],
                name=f"{name}.Reshape")
    return out
