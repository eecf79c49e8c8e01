"""The calibration methods a config may name (:data:`qaev.config.CalibMethod`), with what
the statistics need to know of each before importing it.

Adding a method is one module under :mod:`qaev.quantize.calibration` that defines
``METHOD`` (a :class:`~qaev.quantize.calibration.base.CalibrationMethod`) and one line in
:data:`CALIBRATIONS`; ``tests/quantize/test_calibration_contract.py`` checks every entry.
This module imports nothing of qaev, so the config schema can list the names.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import MappingProxyType
from typing import Mapping

__all__ = ["CalibrationEntry", "CALIBRATIONS", "get_calibration", "calibration_entry"]


@dataclass(frozen=True, kw_only=True)
class CalibrationEntry:
    """A registered calibration method.

    Attributes:
        module: the module defining ``METHOD``.
        uses_bits: the range depends on the activation bit width (memoised per width).
        uses_percentile: the range depends on the percentile option.
        summary: one line for help texts.
    """

    module: str
    uses_bits: bool = False
    uses_percentile: bool = False
    summary: str = ""


CALIBRATIONS: Mapping[str, CalibrationEntry] = MappingProxyType({
    "minmax": CalibrationEntry(module="qaev.quantize.calibration.minmax", summary="exact min and max"),
    "percentile": CalibrationEntry(module="qaev.quantize.calibration.percentile", uses_percentile=True,
                                   summary="clip each tail at a percentile"),
    "entropy": CalibrationEntry(module="qaev.quantize.calibration.entropy", uses_bits=True,
                                summary="the clip of least KL divergence (TensorRT)"),
    "mse": CalibrationEntry(module="qaev.quantize.calibration.mse", uses_bits=True,
                            summary="the clip of least squared error"),
})


def calibration_entry(name) -> CalibrationEntry:
    """The registry entry of ``name`` (a :class:`~qaev.config.CalibMethod` or its value)."""
    return CALIBRATIONS[getattr(name, "value", name)]


def get_calibration(name):
    """The method object ``METHOD`` of the module registered as ``name``."""
    return import_module(calibration_entry(name).module).METHOD
