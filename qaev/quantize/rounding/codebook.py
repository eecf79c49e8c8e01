"""Codebook rounding: a 2-bit embedding table as 256 learned four-weight vectors
(:mod:`qaev.quantize.codebook`)."""
from __future__ import annotations

import math

from qaev.quantize.codebook import CODES, VECTOR, cached_codebook, codebook_lookup, supports_codebook
from qaev.quantize.rounding.base import TableRounding

__all__ = ["Codebook", "METHOD"]

_SCALE_BYTES = 4  # fp32 row scales and vector entries


class Codebook(TableRounding):
    """One 8-bit code per four weights, one scale per row, 256 shared vectors."""

    name = "codebook"

    def problem(self, layer):
        if supports_codebook(layer):
            return None
        return (f"is a {layer.op_type}: codebook rounding applies to lookups (Gather) into 2-D tables "
                "whose rows are a multiple of 4 long")

    def weight(self, w):
        return cached_codebook(w)

    def insert(self, ed, node, weight, *, name):
        codebook_lookup(ed, node, weight, name=name)

    def dequantize(self, weight):
        return weight.dequantize()

    def weight_bytes(self, layer, eff):
        rows = int(layer.weight_shape[0])
        return math.ceil(layer.params * eff.w_bits / 8) + rows * _SCALE_BYTES + CODES * VECTOR * _SCALE_BYTES


METHOD = Codebook()
