"""A quantized model's two sizes, each named, and how many times smaller than float it is.

* **by bit count** (``size_mb``): every weight at its bit width, with its scales and zero
  points, plus every other initializer (:func:`qaev.quantize.sizes.model_bytes`). Exact.
* **file**: the bytes of the exported ``.onnx`` file: the graph itself, and weights in the
  storage types ONNX has (a width without its own type is stored in a wider one; see
  :mod:`qaev.quantize.export`).

"x smaller than float" divides the float model's bit-count size by the point's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import onnx

from qaev.config import QuantConfig
from qaev.model.layers import LayerInfo
from qaev.quantize.sizes import model_bytes, other_bytes

__all__ = ["Sizes", "sizes_of", "format_mb"]


def format_mb(value: float) -> str:
    """Megabytes with three significant digits (``0.0147``, ``0.0302``, ``12.4``, ``103``)."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"


@dataclass(frozen=True)
class Sizes:
    """A model's sizes in MB (10^6 bytes).

    Attributes:
        bit_count_mb: weights at their bit widths, scales and zero points and the other
            initializers included (the ``size_mb`` objective).
        float_bit_count_mb: the same count for the float model.
        file_mb: the exported ``.onnx`` file, when one was written (else None).
    """

    bit_count_mb: float
    float_bit_count_mb: float
    file_mb: float | None = None

    @property
    def x_smaller(self) -> float:
        """Float bit-count size / this bit-count size."""
        return self.float_bit_count_mb / self.bit_count_mb if self.bit_count_mb > 0 else math.inf

    def to_dict(self) -> dict:
        """The JSON form (``front.json``'s ``sizes`` of a point)."""
        out = {"bit_count_mb": self.bit_count_mb, "x_smaller": round(self.x_smaller, 4)}
        return {**out, "file_mb": self.file_mb} if self.file_mb is not None else out

    def text(self) -> str:
        """One line, e.g. ``weights 0.0147 MB by bit count, file 0.0302 MB, 4.33x smaller than float``."""
        file = f", file {format_mb(self.file_mb)} MB" if self.file_mb is not None else ""
        return (f"weights {format_mb(self.bit_count_mb)} MB by bit count{file}, "
                f"{self.x_smaller:.3g}x smaller than float (by bit count)")


def sizes_of(layers: Sequence[LayerInfo], config: QuantConfig, proto: onnx.ModelProto, *,
             file_bytes: int | None = None, other: int | None = None) -> Sizes:
    """The :class:`Sizes` of ``config`` on the float model ``proto`` whose layers are ``layers``.

    Args:
        layers: the quantizable layers of the float model.
        config: the point's config.
        proto: the float model (for the initializers that are no layer's weight).
        file_bytes: the exported file's length, when it was written.
        other: :func:`~qaev.quantize.sizes.other_bytes` of ``proto`` when known (saves
            reading every initializer again).
    """
    other = other_bytes(proto, layers) if other is None else other
    return Sizes(bit_count_mb=model_bytes(layers, config, other) / 1e6,
                 float_bit_count_mb=model_bytes(layers, QuantConfig(), other) / 1e6,
                 file_mb=None if file_bytes is None else file_bytes / 1e6)
