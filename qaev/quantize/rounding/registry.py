"""The rounding methods a config may name, with what the rest of the engine must know of
each before it imports the method: the module that implements it and its traits.

Adding a method is one module under :mod:`qaev.quantize.rounding` that defines ``METHOD``
(a :class:`~qaev.quantize.rounding.base.GridRounding` or
:class:`~qaev.quantize.rounding.base.TableRounding`) and one line in :data:`ROUNDINGS`;
``tests/quantize/test_rounding_contract.py`` checks every entry against its module. This
module imports nothing of qaev, so the config schema can list the names.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import MappingProxyType
from typing import Mapping

__all__ = ["RoundingEntry", "ROUNDINGS", "get_rounding", "rounding_entry"]


@dataclass(frozen=True, kw_only=True)
class RoundingEntry:
    """A registered rounding method.

    Attributes:
        module: the module defining ``METHOD``.
        on_grid: the method picks a point of the scalar grid of
            :func:`~qaev.quantize.weights.quantize_weight` for every weight (granularity,
            symmetry and the weight range apply; the model stores DequantizeLinear weights);
            False for a method with its own representation (a codebook), whose grid genes
            are normalised away.
        needs_data: its weights depend on calibration data (rebuilding a config takes it).
        widths: the weight widths it supports (None: every integer width).
        model_scope: the method learns all its layers of a model together
            (:meth:`qaev.quantize.Quantizer.build` runs it; its ``round`` is not used there).
        summary: one line for help texts.
    """

    module: str
    on_grid: bool = True
    needs_data: bool = False
    widths: tuple[int, ...] | None = None
    model_scope: bool = False
    summary: str = ""


ROUNDINGS: Mapping[str, RoundingEntry] = MappingProxyType({
    "nearest": RoundingEntry(module="qaev.quantize.rounding.nearest", summary="round to the nearest grid point"),
    "gptq": RoundingEntry(module="qaev.quantize.rounding.gptq", needs_data=True,
                          summary="second-order, data-aware rounding on the same grid (GPTQ)"),
    "codebook": RoundingEntry(module="qaev.quantize.rounding.codebook", on_grid=False, widths=(2,),
                              summary="2-bit embedding tables as 256 learned 4-weight vectors"),
    "adaround": RoundingEntry(module="qaev.quantize.rounding.adaround", needs_data=True,
                              summary="learned up/down rounding per layer (AdaRound; needs PyTorch)"),
    "block": RoundingEntry(module="qaev.quantize.rounding.block", needs_data=True, model_scope=True,
                           summary="rounding and activation steps learned block by block (BRECQ/QDrop; needs PyTorch)"),
})


def rounding_entry(name: str) -> RoundingEntry:
    """The registry entry of ``name`` (a :class:`~qaev.config.Rounding` or its value)."""
    return ROUNDINGS[getattr(name, "value", name)]


def get_rounding(name: str):
    """The method object ``METHOD`` of the module registered as ``name``."""
    return import_module(rounding_entry(name).module).METHOD
