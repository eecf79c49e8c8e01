"""Quantization configs: frozen dataclasses and enums, validated on construction.

A :class:`QuantConfig` fully describes a quantized model: one :class:`LayerConfig` per
quantized layer (layers not listed stay float), the global calibration method and scale
rule, and the calibrated activation ranges, so applying it needs no data. Reading and
writing YAML/JSON lives in :mod:`qaev.config_io`.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Mapping

from qaev.errors import ConfigError
from qaev.options import (ACT_BITS, ACT_SETTINGS, WEIGHT_BITS, ActMode, BlockSettings, CalibMethod, Granularity,
                          OutputLoss, Rounding, RoundingInputs, ScaleRule, WeightRange, act_name)
from qaev.quantize.rounding.registry import rounding_entry

__all__ = [
    "WEIGHT_BITS",
    "ACT_BITS",
    "ACT_SETTINGS",
    "act_name",
    "CONFIG_VERSION",
    "NBITS_ACCURACY_LEVELS",
    "Granularity",
    "ActMode",
    "CalibMethod",
    "ScaleRule",
    "Rounding",
    "RoundingInputs",
    "LayerConfig",
    "QuantConfig",
    "WeightRange",
    "BlockSettings",
    "OutputLoss",
]

CONFIG_VERSION = 1
#: ONNX Runtime's ``accuracy_level`` values of ``MatMulNBits`` (:attr:`QuantConfig.nbits_accuracy`).
NBITS_ACCURACY_LEVELS = (0, 1, 2, 3, 4)

def _check_keys(cls, data, where: str) -> None:
    """``data`` must be a mapping whose keys are fields of dataclass ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)}, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")


def _enum(cls, value, where: str):
    if isinstance(value, cls):
        return value
    try:
        return cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"{where}: {value!r} is not one of {allowed}") from None


@dataclass(frozen=True, kw_only=True)
class LayerConfig:
    """Quantization of one layer.

    Args:
        w_bits: weight bits from :data:`WEIGHT_BITS`; ``None`` keeps the weight float.
        granularity: per-tensor, per-channel or block-wise scales for the weight.
        symmetric: symmetric weight grid (zero point 0) or asymmetric.
        act: static, dynamic (int8, run-time scale) or float activations.
        a_bits: static activation bits from :data:`ACT_BITS` (ignored unless static).
        rounding: the weight rounding method (:data:`Rounding`, from the rounding
            registry; ignored for float and 16-bit weights). A method that does not round
            onto the scalar grid (a codebook) ignores granularity, symmetry and weight range.
        bias_correction: add the calibration-data mean of the weight quantization error
            to the layer's bias (Nagel et al., "Data-Free Quantization", ICCV 2019;
            ignored for float and 16-bit weights).
        weight_range: the weight grid's range per scale group, min/max or MSE-clipped
            (ignored for float and 16-bit weights).
    """

    w_bits: int | None = 8
    granularity: Granularity = Granularity.PER_CHANNEL
    symmetric: bool = True
    act: ActMode = ActMode.STATIC
    a_bits: int = 8
    rounding: Rounding = Rounding.NEAREST
    bias_correction: bool = False
    weight_range: WeightRange = WeightRange.MINMAX

    def __post_init__(self) -> None:
        object.__setattr__(self, "granularity", _enum(Granularity, self.granularity, "granularity"))
        object.__setattr__(self, "weight_range", _enum(WeightRange, self.weight_range, "weight_range"))
        object.__setattr__(self, "rounding", _enum(Rounding, self.rounding, "rounding"))
        if not isinstance(self.bias_correction, bool):
            raise ConfigError(f"bias_correction: expected true/false, got {self.bias_correction!r}")
        object.__setattr__(self, "act", _enum(ActMode, self.act, "act"))
        if self.w_bits not in WEIGHT_BITS or isinstance(self.w_bits, bool):
            raise ConfigError(f"w_bits: {self.w_bits!r} is not one of {WEIGHT_BITS}")
        if self.a_bits not in ACT_BITS or isinstance(self.a_bits, bool):
            raise ConfigError(f"a_bits: {self.a_bits!r} is not one of {ACT_BITS}")
        if not isinstance(self.symmetric, bool):
            raise ConfigError(f"symmetric: expected true/false, got {self.symmetric!r}")
        if self.act is ActMode.DYNAMIC and (self.w_bits is None or self.w_bits > 8):
            raise ConfigError("act: dynamic activations need integer weights of at most 8 bits")
        widths = rounding_entry(self.rounding).widths
        if widths is not None and self.w_bits not in widths:
            raise ConfigError(f"rounding: {self.rounding.value} stores {'/'.join(map(str, widths))}-bit weights; "
                              f"w_bits must be {' or '.join(map(str, widths))}, got {self.w_bits!r}")

    def stores(self, w_bits: int | None) -> bool:
        """Whether this config's rounding method can store ``w_bits``-bit weights (a table
        method such as the 2-bit codebook stores one width only)."""
        widths = rounding_entry(self.rounding).widths
        return widths is None or w_bits in widths

    @property
    def is_float(self) -> bool:
        """True when neither the weight nor the activations are quantized."""
        return self.w_bits is None and self.act is ActMode.FLOAT

    def effective(self) -> "LayerConfig":
        """The config with genes that cannot change the built model normalised away
        (computed once per instance: a search asks for it thousands of times)."""
        memo = self.__dict__.get("_effective")
        if memo is None:
            memo = self._normalised()
            object.__setattr__(self, "_effective", memo)
        return memo

    def key_json(self) -> str:
        """``json.dumps(self.effective().to_dict(), sort_keys=True)``, computed once per
        instance (a config's hash is built from these)."""
        memo = self.__dict__.get("_key_json")
        if memo is None:
            memo = json.dumps(self.effective().to_dict(), sort_keys=True)
            object.__setattr__(self, "_key_json", memo)
        return memo

    def _normalised(self) -> "LayerConfig":
        changes = {}
        if self.act is not ActMode.STATIC:
            changes["a_bits"] = 8
        if self.w_bits is None or self.w_bits == 16:
            # Float weights have no grid; 16-bit is held per-channel symmetric in every case.
            changes["granularity"] = Granularity.PER_CHANNEL
            changes["symmetric"] = True
            if self.rounding is not Rounding.NEAREST:
                changes["rounding"] = Rounding.NEAREST
            if self.bias_correction:
                changes["bias_correction"] = False
            if self.weight_range is not WeightRange.MINMAX:
                changes["weight_range"] = WeightRange.MINMAX
        elif not rounding_entry(self.rounding).on_grid:
            # a representation of its own (e.g. a codebook): no grid genes apply
            changes.update(granularity=Granularity.PER_CHANNEL, symmetric=True, weight_range=WeightRange.MINMAX)
            changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        return LayerConfig(**{**self.to_dict(), **changes}) if changes else self

    def to_dict(self) -> dict:
        """Plain JSON-ready dict. ``rounding``, ``bias_correction`` and ``weight_range``
        appear only when not at their defaults, so older files and :meth:`QuantConfig.key`
        hashes are unchanged."""
        out = {
            "w_bits": self.w_bits,
            "granularity": self.granularity.value,
            "symmetric": self.symmetric,
            "act": self.act.value,
            "a_bits": self.a_bits,
        }
        if self.rounding is not Rounding.NEAREST:
            out["rounding"] = self.rounding.value
        if self.bias_correction:
            out["bias_correction"] = True
        if self.weight_range is not WeightRange.MINMAX:
            out["weight_range"] = self.weight_range.value
        return out

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = "layer") -> "LayerConfig":
        """Build from a mapping; unknown keys are rejected by name."""
        _check_keys(cls, data, where)
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


@functools.lru_cache(maxsize=8192)
def _json_name(name: str) -> str:
    """A layer name as JSON text (memoised: the same few hundred names are written over and over)."""
    return json.dumps(name)


def _freeze_ranges(ranges) -> Mapping[str, tuple[float, float]]:
    if ranges is not None and not isinstance(ranges, Mapping):
        raise ConfigError(f"ranges: expected a mapping of tensor name to [low, high], got {type(ranges).__name__}")
    out = {}
    for name, pair in dict(ranges or {}).items():
        try:
            lo, hi = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ConfigError(f"ranges.{name}: expected [low, high], got {pair!r}") from None
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ConfigError(f"ranges.{name}: expected finite numbers, got [{lo}, {hi}]")
        if not lo <= hi:
            raise ConfigError(f"ranges.{name}: low {lo} is above high {hi}")
        out[str(name)] = (lo, hi)
    return MappingProxyType(dict(sorted(out.items())))


@dataclass(frozen=True, kw_only=True)
class QuantConfig:
    """A whole-model quantization config.

    Args:
        layers: layer name -> :class:`LayerConfig`; layers not listed stay float.
        calibration: how static activation ranges were (or will be) derived.
        scale_rule: float or power-of-two scales.
        ranges: activation tensor name -> calibrated ``(low, high)``; filled by
            :func:`qaev.quantize.resolve_ranges` so the config rebuilds without data.
        model_sha256: hash of the float model the config belongs to (checked on apply).
        version: schema version of the config file.
        rounding_inputs: which inputs GPTQ rounding and bias correction fit to
            (:class:`RoundingInputs`; written to files only when not ``float``).
        block: how layers with ``block`` rounding learn (:class:`BlockSettings`; written
            to files only when not the defaults).
        nbits_accuracy: ONNX Runtime's ``accuracy_level`` of the block-wise weight-only
            MatMuls of at most 4 bits (``MatMulNBits``), evaluated and exported alike: 0
            (unset: float32 arithmetic on the dequantized weights; 1-3 compute the same on
            CPUs) or 4 (the activations quantized to int8 per block inside the kernel:
            faster on x86 CPUs with VNNI, at a small added error). Written to files only
            when not 0.
    """

    layers: Mapping[str, LayerConfig] = field(default_factory=dict)
    calibration: CalibMethod = CalibMethod.MINMAX
    scale_rule: ScaleRule = ScaleRule.FLOAT
    rounding_inputs: RoundingInputs = RoundingInputs.FLOAT
    nbits_accuracy: int = 0
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    block: BlockSettings = field(default_factory=BlockSettings)
    model_sha256: str | None = None
    version: int = CONFIG_VERSION

    def __post_init__(self) -> None:
        if self.version != CONFIG_VERSION:
            raise ConfigError(f"version: {self.version!r} is not supported (expected {CONFIG_VERSION})")
        if self.model_sha256 is not None and not isinstance(self.model_sha256, str):
            raise ConfigError(f"model_sha256: expected a hex string, got {self.model_sha256!r}")
        object.__setattr__(self, "calibration", _enum(CalibMethod, self.calibration, "calibration"))
        object.__setattr__(self, "scale_rule", _enum(ScaleRule, self.scale_rule, "scale_rule"))
        object.__setattr__(self, "rounding_inputs", _enum(RoundingInputs, self.rounding_inputs, "rounding_inputs"))
        if not isinstance(self.block, BlockSettings):
            object.__setattr__(self, "block", BlockSettings.from_dict(self.block))
        if isinstance(self.nbits_accuracy, bool) or self.nbits_accuracy not in NBITS_ACCURACY_LEVELS:
            raise ConfigError(f"nbits_accuracy: {self.nbits_accuracy!r} is not one of {NBITS_ACCURACY_LEVELS}")
        layers = {}
        for name, cfg in dict(self.layers).items():
            if not isinstance(cfg, LayerConfig):
                cfg = LayerConfig.from_dict(cfg, where=f"layers.{name}")
            layers[str(name)] = cfg
        object.__setattr__(self, "layers", MappingProxyType(layers))
        object.__setattr__(self, "ranges", _freeze_ranges(self.ranges))

    def __hash__(self) -> int:
        return hash(self.key())

    def __reduce__(self):
        # copy and pickle through the on-disk schema (the read-only mappings do not pickle)
        return QuantConfig.from_dict, (self.to_dict(),)

    def layer(self, name: str) -> LayerConfig | None:
        """The config of ``name``, or None when it stays float."""
        cfg = self.layers.get(name)
        return None if cfg is None or cfg.is_float else cfg

    @property
    def needs_data(self) -> bool:
        """Whether rebuilding the model takes calibration data beyond the stored ranges: a
        quantized layer rounds its weights with a data-aware method (GPTQ) or corrects its bias, or layers are
        fitted to the quantized inputs of the layers before them."""
        effective = [cfg.effective() for cfg in self.layers.values() if not cfg.is_float]
        if effective and self.rounding_inputs is RoundingInputs.QUANTIZED:
            return True
        return any(rounding_entry(cfg.rounding).needs_data or cfg.bias_correction for cfg in effective)

    def with_ranges(self, ranges: Mapping[str, tuple[float, float]]) -> "QuantConfig":
        """A copy carrying calibrated activation ranges."""
        return QuantConfig(**{**self._fields(), "ranges": ranges})

    def with_model(self, sha256: str) -> "QuantConfig":
        """A copy bound to a model hash."""
        return QuantConfig(**{**self._fields(), "model_sha256": sha256})

    def _fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the on-disk schema)."""
        return {
            "version": self.version,
            "model_sha256": self.model_sha256,
            "calibration": self.calibration.value,
            "scale_rule": self.scale_rule.value,
            "layers": {name: cfg.to_dict() for name, cfg in self.layers.items()},
            "ranges": {name: [lo, hi] for name, (lo, hi) in self.ranges.items()},
        } | ({"rounding_inputs": self.rounding_inputs.value}
             if self.rounding_inputs is not RoundingInputs.FLOAT else {}) | (
            {"block": self.block.to_dict()} if self.block != BlockSettings() else {}) | (
            {"nbits_accuracy": self.nbits_accuracy} if self.nbits_accuracy else {})

    def key(self) -> str:
        """Hash of the *effective* config: genes that do not change the model share it
        (computed once per instance)."""
        memo = self.__dict__.get("_key")
        if memo is None:
            memo = self._hash()
            object.__setattr__(self, "_key", memo)
        return memo

    def _hash(self) -> str:
        """sha256 of ``json.dumps(payload, sort_keys=True)`` with the payload ``{"layers":
        {name: effective settings}, "calibration", "scale_rule", "ranges"}`` (plus
        ``rounding_inputs`` and ``nbits_accuracy`` where they apply), written out piece by
        piece from each layer's cached :meth:`LayerConfig.key_json` (a config of a few
        hundred layers is hashed thousands of times in a search); the text is the same."""
        quantized = [(name, cfg) for name, cfg in sorted(self.layers.items()) if not cfg.is_float]
        uses_static = any(cfg.act is ActMode.STATIC for cfg in self.layers.values())
        head = {"calibration": self.calibration.value if uses_static else None,
                "scale_rule": self.scale_rule.value if quantized else None,
                "ranges": {k: list(v) for k, v in self.ranges.items()}}
        if quantized and self.rounding_inputs is not RoundingInputs.FLOAT:
            head["rounding_inputs"] = self.rounding_inputs.value
        if self.nbits_accuracy and any(cfg.act is ActMode.FLOAT and cfg.granularity.block_size
                                       and cfg.w_bits is not None and cfg.w_bits <= 4 for cfg in self.layers.values()):
            head["nbits_accuracy"] = self.nbits_accuracy
        if any(rounding_entry(cfg.effective().rounding).model_scope for _, cfg in quantized):
            head["block"] = self.block.to_dict()
        layers = "{" + ", ".join(f"{_json_name(name)}: {cfg.key_json()}" for name, cfg in quantized) + "}"
        parts = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in head.items()]
        parts.append(f'"layers": {layers}')
        blob = "{" + ", ".join(sorted(parts)) + "}"
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = "config") -> "QuantConfig":
        """Build from the on-disk schema; unknown keys are rejected by name."""
        _check_keys(cls, data, where)
        if "version" not in data:
            raise ConfigError(f"{where}: missing 'version'")
        layers = data.get("layers") or {}
        if not isinstance(layers, Mapping):
            raise ConfigError(f"{where}: 'layers' must be a mapping of layer name to settings")
        try:
            return cls(**{**data, "layers": layers})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    @classmethod
    def uniform(
        cls,
        layer_names,
        *,
        w_bits: int | None = 8,
        a_bits: int = 8,
        act: ActMode = ActMode.STATIC,
        granularity: Granularity = Granularity.PER_CHANNEL,
        symmetric: bool = True,
        calibration: CalibMethod = CalibMethod.MINMAX,
        scale_rule: ScaleRule = ScaleRule.FLOAT,
    ) -> "QuantConfig":
        """The same :class:`LayerConfig` on every named layer."""
        cfg = LayerConfig(w_bits=w_bits, a_bits=a_bits, act=act, granularity=granularity, symmetric=symmetric)
        return cls(layers={n: cfg for n in layer_names}, calibration=calibration, scale_rule=scale_rule)
