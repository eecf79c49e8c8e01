"""What a rounding method implements.

Two kinds, as the registry entry's ``on_grid`` says:

- :class:`GridRounding` chooses, for every weight, a point of the scalar grid that
  :func:`~qaev.quantize.weights.quantize_weight` picks (nearest, GPTQ, learned rounding):
  the engine builds, exports, sizes and simulates the result like any grid weight.
- :class:`TableRounding` has its own representation (a codebook): it says how the weight is
  computed, inserted into the evaluation graph (which is also the exported form), read back
  as float values, and how many bytes it stores.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from qaev.config import LayerConfig
from qaev.model.layers import LayerInfo
from qaev.quantize.rounding.groups import supports_data_aware

__all__ = ["RoundingMethod", "GridRounding", "DataAwareRounding", "TableRounding"]


class RoundingMethod:
    """Base of every method. ``name`` is its registry key."""

    name: str = ""

    def problem(self, layer: LayerInfo) -> str | None:
        """Why the method cannot apply to ``layer`` (a phrase completing "layer X ..."), or
        None when it can. Width limits are the registry entry's ``widths``."""
        return None


class GridRounding(RoundingMethod):
    """A method that rounds onto the fixed grid of round-to-nearest."""

    def round(self, w: np.ndarray, layer: LayerInfo, eff: LayerConfig, *, grid, stats: Callable):
        """The weight ``w`` of ``layer`` on the scales and zero points of ``grid``.

        Args:
            w: the float weight in its ONNX layout.
            layer: the layer it belongs to.
            eff: the effective layer config.
            grid: the round-to-nearest :class:`~qaev.quantize.weights.QuantizedWeight`
                (its scales and zero points are the grid; nearest returns it as it is).
            stats: called (only by methods that need data) for the layer's
                :class:`~qaev.quantize.layer_inputs.InputStats`.

        Returns:
            A :class:`~qaev.quantize.weights.QuantizedWeight` with ``grid``'s scales, zero
            points and layout.
        """
        raise NotImplementedError


class DataAwareRounding(GridRounding):
    """A grid method fitted to the layer's calibration inputs (GPTQ, learned rounding): it
    applies to Conv, Gemm and MatMul layers with a 2-D weight only."""

    def problem(self, layer: LayerInfo) -> str | None:
        if supports_data_aware(layer):
            return None
        return f"is a {layer.op_type}: {self.name} rounding applies to Conv/Gemm/MatMul (2-D) weights only"


class TableRounding(RoundingMethod):
    """A method with its own weight representation."""

    def weight(self, w: np.ndarray):
        """The method's representation of float weight ``w`` (deterministic)."""
        raise NotImplementedError

    def insert(self, ed, node, weight, *, name: str) -> None:
        """Replace ``node``'s use of its float weight in the graph being edited (``ed``, a
        :class:`~qaev.quantize.graph_edit.GraphEditor`) by ``weight``; ``name`` prefixes
        every name it adds. The result is also the exported form."""
        raise NotImplementedError

    def dequantize(self, weight) -> np.ndarray:
        """Float32 values exactly as the inserted graph computes them."""
        raise NotImplementedError

    def weight_bytes(self, layer: LayerInfo, eff: LayerConfig) -> int:
        """Exact bytes the representation stores for ``layer``."""
        raise NotImplementedError
