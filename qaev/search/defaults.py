"""The default search space: the recipes the benchmarks measured best, chosen from the
model's layers (not from a problem's name), and named presets for the common goals.

A model is a *convolutional* network when Conv layers do most of its multiply-accumulates,
else a *transformer* (MatMul/Gemm projections, Gather embedding tables). Each family has the
settings measured best on its benchmark model (docs/defaults.md lists each with the table
and command that measured it); without calibration data (label-free runs on generated
inputs) the data-aware pieces (GPTQ, bias correction) are left out. Options a user gives
override the defaults one by one.

Presets (``qaev search --preset``):

- ``size`` (the default): the smallest model within tolerance: weight-only quantization at
  the widths that pay on the family.
- ``latency-host``: the fastest model on this CPU: integer kernels ONNX Runtime fuses
  (static 8-bit activations for convolutions, dynamic int8 for transformer MatMuls), host
  latency measured as an objective.
- ``npu-int8``: what an integer NPU runs natively: W8A8 static, per-channel symmetric weights,
  power-of-two scales allowed, estimated latency on the Hexagon table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from qaev.errors import ConfigError
from qaev.model.layers import LayerInfo
from qaev.search.spec import SpaceSpec

__all__ = ["family", "Preset", "PRESETS", "default_space", "FAMILIES"]

FAMILIES = ("cnn", "transformer")


def family(layers: Sequence[LayerInfo]) -> str:
    """``cnn`` when Conv layers do most of the multiply-accumulates (most of the weights,
    where shapes are unknown), else ``transformer``."""
    weighted = [layer for layer in layers if layer.has_weight]
    known = all(layer.macs is not None for layer in weighted)
    size = (lambda layer: layer.macs) if known else (lambda layer: layer.params)  # noqa: E731
    conv = sum(size(layer) for layer in weighted if layer.op_type in ("Conv", "ConvTranspose"))
    total = sum(size(layer) for layer in weighted)
    return "cnn" if total and conv >= total / 2 else "transformer"


#: Per family: the space measured best for size (weight-only), with calibration data.
_SIZE = {
    "cnn": dict(w_bits=(3, 4, 6, 8), acts=("float",), granularities=("per_channel",), symmetric=(False,),
                roundings=("gptq",), bias_corrections=(True,), weight_range="mse"),
    "transformer": dict(w_bits=(2, 3, 4, 8), acts=("float",), granularities=("per_channel",), symmetric=(False,),
                        roundings=("gptq", "codebook"), bias_corrections=(True,), weight_range="mse"),
}
_LATENCY = {
    "cnn": dict(w_bits=(4, 8), acts=("a8", "float"), granularities=("per_channel",), symmetric=(True,),
                roundings=("gptq",), bias_corrections=(True,), weight_range="mse"),
    "transformer": dict(w_bits=(4, 8), acts=("dyn8", "float"), granularities=("per_channel",), symmetric=(True,),
                        roundings=("gptq",), bias_corrections=(True,), weight_range="mse"),
}
_NPU = dict(w_bits=(8,), acts=("a8", "a16"), granularities=("per_channel",), symmetric=(True,),
            scale_rules=("float", "pow2"), calibrations=("minmax", "percentile"), roundings=("gptq",),
            bias_corrections=(True,), weight_range="minmax")


@dataclass(frozen=True)
class Preset:
    """A named goal: per-family space settings, and the objectives and hardware it implies.

    Attributes:
        name: the preset's name.
        summary: one line for help texts.
        spaces: family -> :class:`~qaev.search.spec.SpaceSpec` keyword settings.
        objectives: objective names (None: the command's).
        hardware: a hardware table name (None: the command's).
    """

    name: str
    summary: str
    spaces: Mapping[str, Mapping] = field(default_factory=dict)
    objectives: tuple[str, ...] | None = None
    hardware: str | None = None


PRESETS: Mapping[str, Preset] = {p.name: p for p in (
    Preset("size", "smallest model within tolerance: weight-only, the widths that pay on the family", _SIZE),
    Preset("latency-host", "fastest model on this CPU: fused integer kernels, host latency measured", _LATENCY,
           objectives=("acc_drop", "host_latency_ms", "size_mb")),
    Preset("npu-int8", "W8A8 for integer NPUs: static 8/16-bit activations, per-channel symmetric weights",
           {"cnn": _NPU, "transformer": _NPU}, objectives=("acc_drop", "est_latency_ms"), hardware="qualcomm_hexagon"),
)}


def default_space(layers: Sequence[LayerInfo], *, preset: str = "size", given: Mapping | None = None,
                  has_data: bool = True) -> SpaceSpec:
    """The space for ``layers`` under ``preset``, with the options in ``given`` (SpaceSpec
    keyword settings the user chose) taking precedence one by one.

    Raises:
        ConfigError: an unknown preset.
    """
    if preset not in PRESETS:
        raise ConfigError(f"--preset: {preset!r} is not one of {', '.join(PRESETS)}")
    settings = dict(PRESETS[preset].spaces[family(layers)])
    if not has_data:  # data-aware rounding on generated inputs would fit noise
        settings.update(roundings=("nearest",), bias_corrections=(False,))
    settings.update({k: v for k, v in dict(given or {}).items() if v is not None})
    return SpaceSpec(**settings)
