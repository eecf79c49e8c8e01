"""Build the QDQ evaluation graph of a config: the model ONNX Runtime runs and we measure.

Weights become ``DequantizeLinear`` of integer initializers (8-bit containers for sub-byte
grids), except in weight-only layers with no quantized activation around them, whose
dequantization is written as arithmetic that ONNX Runtime folds when the session loads
(:mod:`qaev.quantize.folded`); static activations get ``QuantizeLinear -> DequantizeLinear`` pairs (with a Clip
first where the grid is narrower than its container); dynamic activations use
``DynamicQuantizeLinear -> MatMulInteger``. Biases of fused integer layers are int32 with
scale ``s_in * s_w`` as the runtime's integer kernels expect.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

from qaev.config import ActMode, LayerConfig, QuantConfig, Rounding, WeightRange
from qaev.errors import ConfigError
from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo
from qaev.model.session import set_nbits_accuracy
from qaev.quantize.bias_correction import add_to_output, alpha_beta, apply_correction, output_correction
from qaev.quantize.folded import folded_weight
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.layer_inputs import LayerInputs
from qaev.quantize.lookup import gathered_lookup, gathers_first
from qaev.quantize.plan import activation_plan, runs_as_nbits, validate_config
from qaev.quantize.rounding.grid import round_weight
from qaev.quantize.rounding.registry import get_rounding, rounding_entry
from qaev.quantize.sequential import Fitted
from qaev.quantize.weights import ActParams, QuantizedWeight, WeightCache, activation_params

__all__ = ["build_qdq", "quantized_weight", "table_weight", "held_weight", "act_params_of", "int32_bias"]


def _layer_inputs(inputs: LayerInputs | None, layer: LayerInfo, what: str):
    if inputs is None:
        raise ConfigError(f"layers.{layer.name}: {what} needs calibration data (build with Quantizer.calibrated)")
    return inputs.get(layer)


def quantized_weight(model: FloatModel, layer: LayerInfo, cfg: LayerConfig, config: QuantConfig,
                     cache: WeightCache | None = None, *, inputs: LayerInputs | None = None) -> QuantizedWeight:
    """The (memoised) quantized weight of ``layer`` under ``cfg``; ``inputs`` supplies the
    layer-input statistics data-aware rounding needs."""
    eff = cfg.effective()
    if not rounding_entry(eff.rounding).on_grid:  # a caller's slip, named instead of an AttributeError
        raise ConfigError(f"layers.{layer.name}: {eff.rounding.value} weights are a table, not a grid "
                          "(held_weight or table_weight give them)")
    key = (layer.weight, layer.channel_axis, layer.reduce_axis, eff.w_bits, eff.granularity, eff.symmetric,
           config.scale_rule) + ((eff.rounding.value,) if eff.rounding is not Rounding.NEAREST else ()) + (
               (eff.weight_range.value,) if eff.weight_range is not WeightRange.MINMAX else ())

    def compute() -> QuantizedWeight:
        return round_weight(model.weight(layer.weight), layer, eff, scale_rule=config.scale_rule,
                            stats=lambda: _layer_inputs(inputs, layer, f"{eff.rounding.value} rounding"))

    return cache.get(key, compute) if cache is not None else compute()


def held_weight(model: FloatModel, layer: LayerInfo, cfg: LayerConfig, config: QuantConfig,
                cache: WeightCache | None = None, *, inputs: LayerInputs | None = None) -> np.ndarray:
    """Float32 values of ``layer``'s weight as the QDQ model computes them under ``cfg``: a
    grid method's dequantized grid, or a table method's (a codebook's) own reconstruction."""
    if not rounding_entry(cfg.effective().rounding).on_grid:
        return get_rounding(cfg.effective().rounding).dequantize(table_weight(model, layer, cfg, cache))
    return quantized_weight(model, layer, cfg, config, cache, inputs=inputs).dequantize()


def table_weight(model: FloatModel, layer: LayerInfo, cfg: LayerConfig, cache: WeightCache | None = None):
    """The weight of ``layer`` in the representation of ``cfg``'s table rounding method (a
    codebook; memoised)."""
    method = get_rounding(cfg.effective().rounding)
    key = (layer.weight, method.name)

    def compute():
        return method.weight(model.weight(layer.weight))

    return cache.get(key, compute) if cache is not None else compute()


def act_params_of(config: QuantConfig, tensor: str, bits: int) -> ActParams:
    """Activation grid of ``tensor`` from the config's calibrated ranges."""
    if tensor not in config.ranges:
        raise ConfigError(f"ranges: no calibrated range for activation {tensor!r} "
                          "(calibrate, or apply a config that has it)")
    lo, hi = config.ranges[tensor]
    return activation_params(lo, hi, bits=bits, scale_rule=config.scale_rule)


def _dq_weight(ed: GraphEditor, prefix: str, qw: QuantizedWeight) -> str:
    inputs = [ed.add_init(f"{prefix}.q", qw.q), ed.add_init(f"{prefix}.scale", qw.scale),
              ed.add_init(f"{prefix}.zp", qw.zero_point)]
    attrs = {}
    if qw.axis is not None:
        attrs["axis"] = qw.axis
    if qw.block_size is not None:
        attrs["block_size"] = qw.block_size
    out = ed.fresh(f"{prefix}.dq")
    ed.add_node("DequantizeLinear", inputs, [out], name=f"{prefix}.DequantizeLinear", **attrs)
    return out


def int32_bias(model: FloatModel, node: onnx.NodeProto, qw: QuantizedWeight, s_in: float,
               bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The int32 bias a fused integer Conv/Gemm expects (scale ``s_in * s_w`` per output
    channel): ``(q, scale)``, or None where the bias stays float (block-wise weights, no
    constant 1-D bias). ``bias`` overrides the node's own (a corrected one)."""
    if qw.block_size is not None:
        return None
    if bias is None:
        if len(node.input) < 3 or node.input[2] not in model.initializers:
            return None
        bias = model.weight(node.input[2])
    bias = bias.astype(np.float64)
    if bias.ndim != 1:
        return None
    scale = (s_in * qw.scale.astype(np.float64)).reshape(-1)
    scale = np.broadcast_to(scale, bias.shape) if scale.size == 1 else scale
    q = np.clip(np.round(bias / scale), -(2**31), 2**31 - 1).astype(np.int32)
    return q, scale.astype(np.float32)


def _int32_bias(ed: GraphEditor, model: FloatModel, layer: LayerInfo, node: onnx.NodeProto,
                qw: QuantizedWeight, s_in: float, bias: np.ndarray | None = None) -> None:
    found = int32_bias(model, node, qw, s_in, bias)
    if found is None:
        return
    q, scale = found
    prefix = f"{layer.name}.bias"
    inputs = [ed.add_init(f"{prefix}.q", q), ed.add_init(f"{prefix}.scale", scale),
              ed.add_init(f"{prefix}.zp", np.zeros_like(q))]
    out = ed.fresh(f"{prefix}.dq")
    ed.add_node("DequantizeLinear", inputs, [out], name=f"{prefix}.DequantizeLinear", axis=0)
    node.input[2] = out


def _dynamic_matmul(ed: GraphEditor, model: FloatModel, layer: LayerInfo, node: onnx.NodeProto,
                    qw: QuantizedWeight) -> None:
    """Replace a MatMul/Gemm by DynamicQuantizeLinear -> MatMulInteger -> scale (-> bias)."""
    q, scale, zp = qw.q, qw.scale, qw.zero_point
    if node.op_type == "Gemm" and any(a.name == "transB" and helper.get_attribute_value(a) for a in node.attribute):
        q = q.T
    alpha, beta = alpha_beta(layer, node)
    p = layer.name
    xq, xs, xzp = ed.fresh(f"{p}.xq"), ed.fresh(f"{p}.xs"), ed.fresh(f"{p}.xzp")
    ed.add_node("DynamicQuantizeLinear", [node.input[0]], [xq, xs, xzp], name=f"{p}.DynamicQuantizeLinear")
    acc = ed.fresh(f"{p}.acc")
    ed.add_node("MatMulInteger", [xq, ed.add_init(f"{p}.wq", np.ascontiguousarray(q)), xzp,
                                  ed.add_init(f"{p}.wzp", zp.reshape(-1))], [acc], name=f"{p}.MatMulInteger")
    accf = ed.fresh(f"{p}.accf")
    ed.add_node("Cast", [acc], [accf], name=f"{p}.Cast", to=onnx.TensorProto.FLOAT)
    total = ed.fresh(f"{p}.scale")
    ed.add_node("Mul", [xs, ed.add_init(f"{p}.wscale", (scale.reshape(-1) * alpha).astype(np.float32))], [total],
                name=f"{p}.ScaleMul")
    has_bias = node.op_type == "Gemm" and len(node.input) > 2 and node.input[2]
    out = ed.fresh(f"{p}.mm") if has_bias else node.output[0]
    ed.add_node("Mul", [accf, total], [out], name=f"{p}.Mul")
    if has_bias:
        bias = node.input[2]
        if beta != 1.0:
            bias = ed.add_init(f"{p}.bias", (model.weight(bias) * beta).astype(np.float32))
        ed.add_node("Add", [out, bias], [node.output[0]], name=f"{p}.BiasAdd")
    ed.remove(node)


def _quantize_activation(ed: GraphEditor, tensor: str, params: ActParams, name: str) -> None:
    as_output = ed.is_output(tensor) and not any(v.name == tensor for v in ed.model.graph.input)
    src = ed.detach_output(tensor) if as_output else tensor
    first, reader = src, None
    if params.bits < 8:
        lo, hi = params.clip
        first = ed.fresh(f"{name}.clipped")
        bounds = [ed.add_init(f"{name}.{end}", np.array(v, np.float32)) for end, v in (("lo", lo), ("hi", hi))]
        reader = ed.add_node("Clip", [src, *bounds], [first], name=f"{name}.Clip")
    scale = ed.add_init(f"{name}.scale", np.array(params.scale, np.float32))
    zp = ed.add_init(f"{name}.zp", np.array(params.zero_point, params.dtype))
    q = ed.fresh(f"{name}.q")
    dq = tensor if as_output else ed.fresh(f"{name}.dq")
    quantize = ed.add_node("QuantizeLinear", [first, scale, zp], [q], name=f"{name}.QuantizeLinear")
    ed.add_node("DequantizeLinear", [q, scale, zp], [dq], name=f"{name}.DequantizeLinear")
    if not as_output:
        ed.rewire_consumers(tensor, dq, skip=(reader or quantize,))


def build_qdq(model: FloatModel, layers: Sequence[LayerInfo], config: QuantConfig, *,
              cache: WeightCache | None = None, inputs: LayerInputs | None = None,
              fitted: Mapping[str, Fitted] | None = None) -> onnx.ModelProto:
    """The QDQ model of ``config`` (with calibrated ranges) applied to ``model``; layers
    with data-aware rounding or bias correction take their statistics from ``inputs``, and
    layers in ``fitted`` (:mod:`qaev.quantize.sequential`) their weight and correction from it.

    Raises:
        ConfigError: an unknown layer, a setting that does not apply to its layer, or a
            static activation without a calibrated range.
    """
    validate_config(config, layers)
    plan = activation_plan(config, layers)
    acts = {t: act_params_of(config, t, bits) for t, bits in plan.bits.items()}
    ed = GraphEditor(model.proto)
    for layer in layers:
        cfg = config.layer(layer.name)
        if cfg is None or cfg.w_bits is None:
            continue
        node = ed.node(layer.name)
        if not rounding_entry(cfg.effective().rounding).on_grid:
            get_rounding(cfg.effective().rounding).insert(ed, node, table_weight(model, layer, cfg, cache),
                                                          name=f"{layer.name}.w")
            continue
        fit = fitted.get(layer.name) if fitted is not None else None
        qw = fit.weight if fit is not None else quantized_weight(model, layer, cfg, config, cache, inputs=inputs)
        if gathers_first(layer, qw.block_size):
            gathered_lookup(ed, node, qw, name=f"{layer.name}.w")
            continue
        correction = None
        if fit is not None:
            correction = fit.correction
        elif cfg.effective().bias_correction:
            stats = _layer_inputs(inputs, layer, "bias correction")
            correction = output_correction(model.weight(layer.weight), qw, stats, layer=layer)
        if cfg.act is ActMode.DYNAMIC:
            if correction is not None:
                add_to_output(ed, model, node, correction, name=layer.name)
            _dynamic_matmul(ed, model, layer, node, qw)
            continue
        slot = 0 if layer.op_type == "Gather" else 1
        weight_only = (cfg.act is ActMode.FLOAT and plan.isolated(layer)
                       and not runs_as_nbits(layer, cfg, plan, config))
        node.input[slot] = (folded_weight if weight_only else _dq_weight)(ed, f"{layer.name}.w", qw)
        bias = None if correction is None else apply_correction(ed, model, layer, node, correction)
        if cfg.act is ActMode.STATIC and cfg.w_bits <= 8 and layer.op_type in ("Conv", "Gemm"):
            _int32_bias(ed, model, layer, node, qw, acts[layer.act_inputs[0]].scale, bias)
    for tensor, params in acts.items():
        _quantize_activation(ed, tensor, params, f"act.{tensor}")
    out = ed.finish()
    if config.nbits_accuracy:
        set_nbits_accuracy(out, config.nbits_accuracy)
    return out
