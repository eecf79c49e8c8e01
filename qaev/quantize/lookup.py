"""Quantized lookup tables, decoded whole by operators ONNX Runtime folds at session load.

Written as ``DequantizeLinear(table) -> Gather``, a quantized embedding table is
dequantized whole on every run (ONNX Runtime keeps ``DequantizeLinear`` for its QDQ
fusions): all-MiniLM-L6-v2's word table is 11.7 M values, which made its dynamic-int8 model
slower than float at batch 1. Decoding only the gathered rows on every run instead costs a
dozen small operators per lookup on every run. :func:`gathered_lookup`
therefore writes the decoding over every row of the table, from initializers only, with
``Gather``/``Cast``/``Sub``/``Mul``/``Reshape``: ONNX Runtime's constant folding replaces
that subgraph by the float table when the session is made, and each run is one ``Gather``,
as in the float model (the table is float in memory, as the float model's is; the file holds
the bits). The values are those ``DequantizeLinear`` gives: ``(q - zero_point) * scale`` in
float32 (the difference of two small integers is exact, so only the product rounds).

Storage: grids of at most 4 bits are packed, four 2-bit or two 4-bit values per byte,
lowest bits first; the bytes index a 256-row table of the values each byte holds, so the
file holds the bits and the graph needs no bit operations. Wider grids store their
int8/int16 rows and cast them. The graph is the same evaluated and exported.
"""
from __future__ import annotations

import numpy as np
import onnx

from qaev.model.layers import LayerInfo
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.weights import QuantizedWeight

__all__ = ["DECODE_ROWS", "pack_bits", "packed_bits", "gathers_first", "decode_table", "gathered_lookup",
           "lookup_shape", "decoded_rows", "whole_table_lookup"]

#: Rows of a decoding table: one per byte value.
DECODE_ROWS = 256


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit values along the last axis, lowest bits first (the last
    byte padded with zeros)."""
    per_byte = 8 // bits
    tail = -values.shape[-1] % per_byte
    if tail:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], tail), values.dtype)], axis=-1)
    v = values.astype(np.uint8)
    out = np.zeros(v[..., 0::per_byte].shape, np.uint8)
    for i in range(per_byte):
        out |= v[..., i::per_byte] << (bits * i)
    return out


def packed_bits(bits: int) -> int | None:
    """Bits per packed value of a ``bits``-bit table (2 or 4), or None: stored whole."""
    return 2 if bits <= 2 else 4 if bits <= 4 else None


def gathers_first(layer: LayerInfo, block: int | None) -> bool:
    """Whether ``layer`` is a lookup whose quantized table (``block``: its block size, if
    block-wise) :func:`gathered_lookup` can write: blocks must split the rows whole."""
    if layer.op_type != "Gather" or len(layer.weight_shape) != 2:
        return False
    return block is None or int(layer.weight_shape[1]) % block == 0


def decode_table(bits: int) -> np.ndarray:
    """``(256, 8 // bits)`` int8: the signed values a packed byte holds (stored as
    ``q + 2^(bits-1)``)."""
    per_byte, offset = 8 // bits, 1 << (bits - 1)
    byte = np.arange(DECODE_ROWS)[:, None]
    fields = (byte >> (bits * np.arange(per_byte))[None, :]) & ((1 << bits) - 1)
    return (fields - offset).astype(np.int8)


def lookup_shape(ed: GraphEditor, ids: str, tail: list[int], *, name: str) -> str:
    """A shape tensor: the shape of ``ids`` followed by ``tail``."""
    ids_shape, shape = ed.fresh(f"{name}.ids_shape"), ed.fresh(f"{name}.shape")
    ed.add_node("Shape", [ids], [ids_shape], name=f"{name}.Shape")
    ed.add_node("Concat", [ids_shape, ed.add_init(f"{name}.tail", np.array(tail, np.int64))], [shape],
                name=f"{name}.Concat", axis=0)
    return shape


def decoded_rows(ed: GraphEditor, ids: str, codes: str, table: str, width: int, *, name: str) -> str:
    """The ids' rows of a lookup stored as 8-bit codes: row ``ids`` of initializer ``codes``
    (uint8), each code replaced by its row of ``table`` (256 rows), joined into rows of
    ``width`` values, shape ``ids.shape + (width,)``."""
    gathered, index, runs, rows = (ed.fresh(f"{name}.{part}") for part in ("codes", "index", "runs", "decoded"))
    ed.add_node("Gather", [codes, ids], [gathered], name=f"{name}.GatherCodes")
    ed.add_node("Cast", [gathered], [index], name=f"{name}.CastCodes", to=onnx.TensorProto.INT32)
    ed.add_node("Gather", [table, index], [runs], name=f"{name}.Decode")
    ed.add_node("Reshape", [runs, lookup_shape(ed, ids, [width], name=f"{name}.joined")], [rows], name=f"{name}.Join")
    return rows


def _values(ed: GraphEditor, ids: str, qw: QuantizedWeight, *, name: str) -> str:
    """Float32 integer values of the ids' rows, ``ids.shape + (D,)``."""
    width = qw.q.shape[1]
    bits = packed_bits(qw.bits)
    values = ed.fresh(f"{name}.values")
    if bits is None:
        gathered = ed.fresh(f"{name}.rows")
        ed.add_node("Gather", [ed.add_init(f"{name}.q", qw.q), ids], [gathered], name=f"{name}.GatherRows")
        ed.add_node("Cast", [gathered], [values], name=f"{name}.Cast", to=onnx.TensorProto.FLOAT)
        return values
    packed = pack_bits(qw.q.astype(np.int16) + (1 << (bits - 1)), bits)
    full = packed.shape[1] * (8 // bits)
    unpacked = decoded_rows(ed, ids, ed.add_init(f"{name}.packed", packed),
                            ed.add_init(f"{name}.decode", decode_table(bits)), full, name=name)
    ed.add_node("Cast", [unpacked], [values], name=f"{name}.Cast", to=onnx.TensorProto.FLOAT)
    if full == width:
        return values
    trimmed = ed.fresh(f"{name}.trimmed")
    ed.add_node("Slice", [values, ed.add_init(f"{name}.start", np.array([0], np.int64)),
                          ed.add_init(f"{name}.end", np.array([width], np.int64)),
                          ed.add_init(f"{name}.axis", np.array([-1], np.int64))], [trimmed], name=f"{name}.Trim")
    return trimmed


def whole_table_lookup(ed: GraphEditor, node: onnx.NodeProto, rows: int, decode, *, name: str) -> None:
    """Replace lookup ``node`` (``Gather(table, ids)``, axis 0) by ``Gather(decoded, ids)``,
    where ``decoded = decode(every_row)`` is a tensor the caller builds from the row indices
    ``0 .. rows-1`` (a ``Range`` of constants): a subgraph of constants, folded at session load."""
    ids, out = node.input[1], node.output[0]
    ed.remove(node)
    every = ed.fresh(f"{name}.every_row")  # Range(0, rows, 1): three scalars in the file, not a row index each
    ed.add_node("Range", [ed.add_init(f"{name}.{what}", np.array(value, np.int64))
                          for what, value in (("first", 0), ("rows", rows), ("step", 1))], [every], name=f"{name}.Rows")
    decoded = decode(every)
    ed.add_node("Gather", [decoded, ids], [out], name=f"{name}.Lookup", axis=0)


def gathered_lookup(ed: GraphEditor, node: onnx.NodeProto, qw: QuantizedWeight, *, name: str) -> None:
    """Replace lookup ``node`` (``Gather(table, ids)``, axis 0) by a lookup into the
    quantized table ``qw``, decoded whole by operators folded at session load (module
    docstring).

    ``qw`` is per-tensor, per-row (``axis`` 0) or block-wise along the row (``axis`` 1,
    the row length a multiple of the block: :func:`gathers_first`).
    """
    whole_table_lookup(ed, node, qw.q.shape[0], lambda ids: _decoded(ed, ids, qw, name=name), name=name)


def _decoded(ed: GraphEditor, ids: str, qw: QuantizedWeight, *, name: str) -> str:
    """The float rows ``ids`` of ``qw``, shape ``ids.shape + (width,)``."""
    rows, width = qw.q.shape
    block = qw.block_size
    values = _values(ed, ids, qw, name=name)
    if block is not None:
        grouped = ed.fresh(f"{name}.blocks")
        ed.add_node("Reshape", [values, lookup_shape(ed, ids, [width // block, block], name=f"{name}.blocked")],
                    [grouped], name=f"{name}.Blocks")
        values = grouped
    group_shape = () if qw.axis is None else (rows, 1) if block is None else (rows, width // block, 1)

    def per_id(array: np.ndarray, what: str, dtype) -> str:
        table = ed.add_init(f"{name}.{what}", array.reshape(group_shape).astype(dtype))
        if qw.axis is None:
            return table
        picked = ed.fresh(f"{name}.{what}.rows")
        ed.add_node("Gather", [table, ids], [picked], name=f"{name}.Gather_{what}")
        return picked

    if np.any(qw.zero_point != 0):
        zero, centred = ed.fresh(f"{name}.zero"), ed.fresh(f"{name}.centred")
        ed.add_node("Cast", [per_id(qw.zero_point, "zp", qw.zero_point.dtype)], [zero], name=f"{name}.CastZero",
                    to=onnx.TensorProto.FLOAT)
        ed.add_node("Sub", [values, zero], [centred], name=f"{name}.Sub")
        values = centred
    scale = per_id(qw.scale, "scale", np.float32)
    scaled = ed.fresh(f"{name}.scaled")
    ed.add_node("Mul", [values, scale], [scaled], name=f"{name}.Mul")
    if block is None:
        return scaled
    joined = ed.fresh(f"{name}.table")
    ed.add_node("Reshape", [scaled, lookup_shape(ed, ids, [width], name=f"{name}.joined")], [joined],
                name=f"{name}.Join")
    return joined
