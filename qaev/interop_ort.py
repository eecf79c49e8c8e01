"""ONNX Runtime ``TensorQuantOverrides``: a config as ORT's quantizer reads it, and back.

``onnxruntime.quantization.quantize_static(..., extra_options={"TensorQuantOverrides": O})``
takes ``O``: tensor name -> list of dicts. This module is the only place those string keys
live. What a qaev config becomes:

* a quantized weight: ``[{"quant_type": "QInt8"|"QInt4"|"QInt16", "symmetric": bool}]``,
  plus ``"axis"`` (the output-channel axis) when per-channel. ORT then derives the same
  round-to-nearest grid qaev uses (symmetric: ``[-(2^(b-1)-1), 2^(b-1)-1]``).
* a static activation: ``[{"quant_type": "QUInt8"|"QUInt4"|"QUInt16", "rmin": lo, "rmax": hi}]``
  with qaev's calibrated range (ORT computes the same asymmetric scale and zero point).
* with power-of-two scales (``scale_rule: pow2``), explicit ``"scale"``/``"zero_point"``
  instead (per channel for per-channel weights), as ORT cannot round scales itself.

Not expressible, so rejected with :class:`~qaev.errors.ConfigError` naming the layer:
2-, 3- and 6-bit weights (no ORT type), block-wise scales, dynamic activations (that is
``quantize_dynamic``), weight-only layers and float weights under quantized activations
(``quantize_static`` quantizes both of a node it quantizes), data-aware rounding, bias
correction and weights fitted to quantized inputs (``quantize_static`` rounds every weight
to nearest and keeps the float biases). Layers a config leaves float
must be passed to ``quantize_static`` as ``nodes_to_exclude``
(see :func:`quantize_static_options`).

In JSON ``quant_type`` is the name of an ``onnxruntime.quantization.QuantType`` member;
:func:`as_ort_values` turns names and numbers into the objects ``quantize_static`` needs.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig, Rounding, RoundingInputs, ScaleRule
from qaev.errors import ConfigError
from qaev.quantize import Quantizer, activation_params, activation_plan, validate_config
from qaev.quantize.qdq import quantized_weight

__all__ = [
    "to_tensor_quant_overrides",
    "from_tensor_quant_overrides",
    "quantize_static_options",
    "as_ort_values",
    "load_overrides",
    "WEIGHT_TYPES",
    "ACTIVATION_TYPES",
]

#: Weight bits -> ORT QuantType name.
WEIGHT_TYPES = {4: "QInt4", 8: "QInt8", 16: "QInt16"}
#: Static activation bits -> ORT QuantType name.
ACTIVATION_TYPES = {4: "QUInt4", 8: "QUInt8", 16: "QUInt16"}
_BITS = {"QInt4": 4, "QUInt4": 4, "QInt8": 8, "QUInt8": 8, "QInt16": 16, "QUInt16": 16}
_KEYS = {"quant_type", "symmetric", "axis", "scale", "zero_point", "rmin", "rmax", "reduce_range", "convert"}


def _tensor_names(quantizer: Quantizer) -> tuple[set[str], set[str]]:
    """(initializer names, every other tensor name) of the float model."""
    graph = quantizer.model.proto.graph
    inits = {i.name for i in graph.initializer}
    tensors = {v.name for v in graph.input} | {v.name for v in graph.output}
    for node in graph.node:
        tensors.update(n for n in (*node.input, *node.output) if n)
    return inits, tensors - inits


def _check_names(names, quantizer: Quantizer) -> None:
    inits, acts = _tensor_names(quantizer)
    for name in names:
        if name not in inits and name not in acts:
            raise ConfigError(f"TensorQuantOverrides: tensor {name!r} is not in the model")


def _unsupported(layer, cfg: LayerConfig) -> str | None:
    if cfg.act is ActMode.DYNAMIC:
        return "dynamic activations have no TensorQuantOverrides form (that is quantize_dynamic)"
    if cfg.act is ActMode.FLOAT:
        return "weight-only quantization: quantize_static quantizes the activations of every node it quantizes"
    if layer.has_weight and cfg.w_bits is None:
        return "a float weight under quantized activations: quantize_static quantizes the weight too"
    if cfg.w_bits is not None and cfg.w_bits not in WEIGHT_TYPES:
        return f"{cfg.w_bits}-bit weights: ONNX Runtime has only {', '.join(map(str, WEIGHT_TYPES))}-bit types"
    if cfg.w_bits is not None and cfg.granularity.block_size:
        return "block-wise scales: TensorQuantOverrides has per-tensor and per-channel only"
    eff = cfg.effective()
    # ORT rounds to nearest
    if cfg.w_bits is not None and (eff.rounding is not Rounding.NEAREST or eff.bias_correction):
        return (f"{eff.rounding.value} rounding" if eff.rounding is not Rounding.NEAREST else "bias correction") + (
            ": quantize_static rounds weights to nearest and keeps the float biases")
    return None


def _weight_entry(quantizer: Quantizer, layer, cfg: LayerConfig, config: QuantConfig) -> list[dict]:
    eff = cfg.effective()
    qtype = WEIGHT_TYPES[eff.w_bits]
    per_channel = eff.granularity is Granularity.PER_CHANNEL
    if config.scale_rule is ScaleRule.FLOAT:
        entry = {"quant_type": qtype, "symmetric": eff.symmetric}
        return [{**entry, "axis": layer.channel_axis}] if per_channel else [entry]
    qw = quantized_weight(quantizer.model, layer, eff, config, quantizer.weights)
    scales, zps = qw.scale.reshape(-1), qw.zero_point.reshape(-1)
    entries = [{"scale": float(s), "zero_point": int(z)} for s, z in zip(scales, zps)]
    entries[0] = {"quant_type": qtype, **({"axis": layer.channel_axis} if per_channel else {}), **entries[0]}
    return entries


def to_tensor_quant_overrides(config: QuantConfig, quantizer: Quantizer) -> dict[str, list[dict]]:
    """``config`` as ONNX Runtime ``TensorQuantOverrides`` (JSON-ready, QuantType names).

    Args:
        config: the config (with calibrated ranges, or a calibrated ``quantizer``).
        quantizer: the engine of the float model the config belongs to.

    Returns:
        Tensor name -> list of override dicts.

    Raises:
        ConfigError: a layer whose settings ORT cannot express (the message names it and
            why), or a tensor name the model lacks.

    Example:
        >>> from qaev.data import digits_model_path, load_digits_split
        >>> from qaev.model.graph import load_model
        >>> q = Quantizer.calibrated(load_model(digits_model_path()), load_digits_split("calib"))
        >>> overrides = to_tensor_quant_overrides(QuantConfig.uniform(q.layer_names), q)
        >>> overrides["0.weight"]
        [{'quant_type': 'QInt8', 'symmetric': True, 'axis': 0}]
        >>> sorted(overrides["input"][0])
        ['quant_type', 'rmax', 'rmin']
    """
    validate_config(config, quantizer.layers)
    if config.rounding_inputs is not RoundingInputs.FLOAT:
        raise ConfigError("rounding_inputs: weights fitted to quantized inputs have no TensorQuantOverrides form "
                          "(quantize_static rounds each weight on its own)")
    resolved = quantizer.resolve(config)
    out: dict[str, list[dict]] = {}
    for layer in quantizer.layers:
        cfg = resolved.layer(layer.name)
        if cfg is None:
            continue
        why = _unsupported(layer, cfg)
        if why:
            raise ConfigError(f"layers.{layer.name}: {why}")
        if layer.has_weight:
            out[layer.weight] = _weight_entry(quantizer, layer, cfg, resolved)
    for tensor, bits in activation_plan(resolved, quantizer.layers).bits.items():
        lo, hi = resolved.ranges[tensor]
        if resolved.scale_rule is ScaleRule.FLOAT:
            out[tensor] = [{"quant_type": ACTIVATION_TYPES[bits], "rmin": float(lo), "rmax": float(hi)}]
        else:
            params = activation_params(lo, hi, bits=bits, scale_rule=resolved.scale_rule)
            out[tensor] = [{"quant_type": ACTIVATION_TYPES[bits], "scale": params.scale,
                            "zero_point": params.zero_point}]
    _check_names(out, quantizer)
    return out


def as_ort_values(overrides: Mapping[str, list[dict]]) -> dict[str, list[dict]]:
    """A copy in the types ``quantize_static`` needs: ``quant_type`` names become
    ``QuantType`` members, ranges and scales ``float32`` and zero points the quant type's
    integer dtype (ONNX Runtime 1.32 fails on plain Python floats for ``rmin``/``rmax``)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.quant_utils import ONNX_TYPE_TO_NP_TYPE

    def convert(entry: dict, qtype) -> dict:
        entry = dict(entry)
        if qtype is not None:
            entry["quant_type"] = qtype
        for key in ("rmin", "rmax", "scale"):
            if key in entry:
                entry[key] = np.array(entry[key], dtype=np.float32)
        if "zero_point" in entry and qtype is not None:
            entry["zero_point"] = np.array(entry["zero_point"], dtype=ONNX_TYPE_TO_NP_TYPE[qtype.tensor_type])
        return entry

    out = {}
    for name, entries in overrides.items():
        qtype = entries[0].get("quant_type") if entries else None
        if isinstance(qtype, str):
            try:
                qtype = QuantType[qtype]
            except KeyError:
                raise ConfigError(f"TensorQuantOverrides.{name}: quant_type {qtype!r} is not an onnxruntime "
                                  "QuantType") from None
        out[name] = [convert(e, qtype) for e in entries]
    return out


def load_overrides(path) -> dict[str, list[dict]]:
    """The file ``qaev export --format ort-overrides`` writes, as :func:`as_ort_values` of it:
    ``quantize_static(..., extra_options={"TensorQuantOverrides": load_overrides(path)})``; the
    layers a point leaves float go in ``nodes_to_exclude`` (the export command names them).

    Raises:
        ConfigError: the file is missing or not a mapping of tensor name to a list of dicts.
    """
    from qaev.documents import read_document
    data = read_document(path, what="TensorQuantOverrides", fmt="json")
    data = data.get("TensorQuantOverrides", data) if isinstance(data, Mapping) else data
    if not isinstance(data, Mapping) or not all(isinstance(v, list) and all(isinstance(e, Mapping) for e in v)
                                                for v in data.values()):
        raise ConfigError(f"{path}: not TensorQuantOverrides (expected tensor name -> list of dicts)")
    return as_ort_values(data)


def quantize_static_options(config: QuantConfig, quantizer: Quantizer) -> dict:
    """Keyword arguments for ``onnxruntime.quantization.quantize_static`` reproducing
    ``config``: the overrides (as QuantType members) and the layers to leave float."""
    overrides = to_tensor_quant_overrides(config, quantizer)
    float_layers = [layer.name for layer in quantizer.layers if config.layer(layer.name) is None]
    return {"nodes_to_exclude": float_layers, "extra_options": {"TensorQuantOverrides": as_ort_values(overrides)}}


# -- import ------------------------------------------------------------------------------

def _type_name(entry: dict, where: str) -> str | None:
    qtype = entry.get("quant_type")
    if qtype is None:
        return None
    name = getattr(qtype, "name", qtype)
    if name not in _BITS:
        raise ConfigError(f"{where}: quant_type {name!r} is not one of {', '.join(_BITS)}")
    return name


def _entries(data: Mapping, quantizer: Quantizer) -> dict[str, list[dict]]:
    if set(data) == {"TensorQuantOverrides"}:
        data = data["TensorQuantOverrides"]
    if not isinstance(data, Mapping):
        raise ConfigError("TensorQuantOverrides: expected a mapping of tensor name to a list of dicts")
    _check_names(data, quantizer)
    out = {}
    for name, entries in data.items():
        where = f"TensorQuantOverrides.{name}"
        if not isinstance(entries, list) or not entries or not all(isinstance(e, Mapping) for e in entries):
            raise ConfigError(f"{where}: expected a non-empty list of dicts")
        for entry in entries:
            unknown = sorted(set(entry) - _KEYS)
            if unknown:
                raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
            if "convert" in entry or entry.get("reduce_range"):
                raise ConfigError(f"{where}: 'convert' and 'reduce_range' have no qaev equivalent")
        out[name] = [dict(e) for e in entries]
    return out


def _weight_config(layer, entries: list[dict], quantizer: Quantizer, where: str) -> tuple[dict, ScaleRule | None]:
    """Weight settings of ``layer`` and the scale rule explicit scales imply (None: none given)."""
    first = entries[0]
    qtype = _type_name(first, where) or "QInt8"
    bits = _BITS[qtype]
    if "axis" in first and int(first["axis"]) % len(layer.weight_shape) != layer.channel_axis:
        raise ConfigError(f"{where}: axis {first['axis']} is not the output-channel axis {layer.channel_axis}")
    granularity = Granularity.PER_CHANNEL if ("axis" in first or len(entries) > 1) else Granularity.PER_TENSOR
    if "scale" not in first:
        symmetric = bool(first.get("symmetric", not qtype.startswith("QU")))
        return {"w_bits": bits, "granularity": granularity, "symmetric": symmetric}, None
    zps = np.array([int(e["zero_point"]) for e in entries])
    scales = np.array([float(e["scale"]) for e in entries], np.float32)
    if qtype.startswith("QU"):  # an unsigned grid is the signed one shifted by 2^(b-1)
        zps = zps - 2 ** (bits - 1)
    settings = {"w_bits": bits, "granularity": granularity, "symmetric": bool(np.all(zps == 0))}
    cfg = LayerConfig(**settings)
    for rule in ScaleRule:
        probe = QuantConfig(scale_rule=rule)
        qw = quantized_weight(quantizer.model, layer, cfg, probe, quantizer.weights)
        if qw.scale.size == scales.size and np.allclose(qw.scale.reshape(-1), scales, rtol=1e-6, atol=0):
            return settings, rule
    raise ConfigError(f"{where}: explicit scales differ from qaev's round-to-nearest grid "
                      "(qaev derives weight scales from the weights; give 'symmetric' instead)")


def _act_range(entry: dict, where: str) -> tuple[tuple[float, float] | None, int, bool]:
    """(range or None, bits, whether the scale is explicit) of one activation override."""
    qtype = _type_name(entry, where) or "QUInt8"
    bits = _BITS[qtype]
    if entry.get("symmetric"):
        raise ConfigError(f"{where}: symmetric activations have no qaev equivalent (qaev's are asymmetric)")
    if "rmin" in entry and "rmax" in entry:
        return (float(entry["rmin"]), float(entry["rmax"])), bits, False
    if "scale" in entry and "zero_point" in entry:
        scale, zp = float(entry["scale"]), int(entry["zero_point"])
        if not qtype.startswith("QU"):
            zp += 2 ** (bits - 1)
        return (-zp * scale, (2**bits - 1 - zp) * scale), bits, True
    return None, bits, False


def _is_pow2(value: float) -> bool:
    return value > 0 and math.log2(value) == round(math.log2(value))


def from_tensor_quant_overrides(data: Mapping, quantizer: Quantizer) -> QuantConfig:
    """The qaev config that ``TensorQuantOverrides`` describe (the inverse of
    :func:`to_tensor_quant_overrides`).

    A layer is quantized when its weight or one of its activation tensors has overrides;
    what the overrides leave out takes ``quantize_static``'s defaults (signed symmetric
    8-bit weights, per-tensor; unsigned 8-bit activations with calibrated ranges, taken
    from ``quantizer``'s statistics).

    Args:
        data: tensor name -> list of dicts (``quant_type`` as a name or a QuantType), or
            ``{"TensorQuantOverrides": ...}``.
        quantizer: the engine of the float model (calibrated, if some range is missing).

    Raises:
        ConfigError: a tensor the model lacks, an unknown key, or a setting qaev cannot
            represent (the message names the tensor).
    """
    entries = _entries(data, quantizer)
    weights = _check_known(entries, quantizer)
    ranges, act_bits, rules = _activation_overrides(entries, weights)
    layers = _layer_configs(entries, quantizer, act_bits=act_bits, rules=rules)
    if len(rules) > 1:
        raise ConfigError("TensorQuantOverrides: explicit scales mix power-of-two and other scales")
    config = QuantConfig(layers=layers, scale_rule=rules.pop() if rules else ScaleRule.FLOAT)
    validate_config(config, quantizer.layers)
    return _with_all_ranges(config, quantizer, ranges)


def _check_known(entries: Mapping[str, list[dict]], quantizer: Quantizer) -> set[str]:
    """The weights of the quantizable layers, after checking that every overridden tensor
    is a weight, input or output of one.

    Raises:
        ConfigError: a tensor qaev has no setting for.
    """
    weights = {layer.weight for layer in quantizer.layers if layer.weight}
    known = weights | {t for layer in quantizer.layers if layer.supports_activations
                       for t in (*layer.act_inputs, layer.output)}
    stray = [name for name in entries if name not in known]
    if stray:
        raise ConfigError(f"TensorQuantOverrides.{stray[0]}: not a weight, input or output of a quantizable layer "
                          "(qaev has no setting for it)")
    return weights


def _activation_overrides(entries: Mapping[str, list[dict]], weights: set[str]):
    """What the overrides of the activation tensors (those not in ``weights``) set.

    Returns:
        ``(ranges, act_bits, rules)``: tensor -> range where one is given, tensor -> bits,
        and the scale rules that explicit scales imply.
    """
    ranges: dict[str, tuple[float, float]] = {}
    rules: set[ScaleRule] = set()
    act_bits: dict[str, int] = {}
    for name, items in entries.items():
        if name in weights:
            continue
        where = f"TensorQuantOverrides.{name}"
        found, bits, explicit = _act_range(items[0], where)
        act_bits[name] = bits
        if found is not None:
            ranges[name] = found
            if explicit:
                scale = float(items[0]["scale"])
                rules.add(ScaleRule.POW2 if _is_pow2(scale) else ScaleRule.FLOAT)
    return ranges, act_bits, rules


def _layer_configs(entries: Mapping[str, list[dict]], quantizer: Quantizer, *, act_bits: Mapping[str, int],
                   rules: set[ScaleRule]) -> dict[str, LayerConfig]:
    """Layer name -> setting of every layer whose weight or activations have overrides
    (``quantize_static``'s defaults for what they leave out); the weights' scale rules
    are added to ``rules``."""
    layers: dict[str, LayerConfig] = {}
    for layer in quantizer.layers:
        tensors = (*layer.act_inputs, layer.output) if layer.supports_activations else ()
        in_weight = layer.weight is not None and layer.weight in entries
        if not in_weight and not any(t in entries for t in tensors):
            continue
        settings = {"w_bits": 8, "granularity": Granularity.PER_TENSOR, "symmetric": True} if layer.has_weight \
            else {"w_bits": None}
        if in_weight:
            settings, rule = _weight_config(layer, entries[layer.weight], quantizer,
                                            f"TensorQuantOverrides.{layer.weight}")
            if rule is not None:
                rules.add(rule)
        a_bits = min((act_bits.get(t, 8) for t in tensors), default=8)
        layers[layer.name] = LayerConfig(**settings, act=ActMode.STATIC, a_bits=a_bits)
    return layers


def _with_all_ranges(config: QuantConfig, quantizer: Quantizer, ranges: dict[str, tuple[float, float]]) -> QuantConfig:
    """``config`` with a range for each activation it quantizes (from ``ranges``, else
    calibrated by ``quantizer``), tied to the model.

    Raises:
        ConfigError: a range is missing and ``quantizer`` has no calibration data.
    """
    plan = activation_plan(config, quantizer.layers)
    missing = [t for t in plan.tensors() if t not in ranges]
    if missing and quantizer.stats is None:
        raise ConfigError(f"TensorQuantOverrides: no range for activation {missing[0]!r} and no calibration data")
    for t in missing:
        ranges[t] = quantizer.stats.range(t, config.calibration, plan.bits[t])
    return config.with_ranges({t: ranges[t] for t in plan.tensors()}).with_model(quantizer.model.sha256)
