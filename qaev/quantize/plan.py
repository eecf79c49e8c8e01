"""What a config asks of the graph: validation against the model's layers, and the plan of
which activation tensors get which static grid."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig, Rounding
from qaev.errors import ConfigError
from qaev.hardware.cost import nbits_shaped
from qaev.model.layers import LayerInfo
from qaev.quantize.rounding.groups import supports_data_aware
from qaev.quantize.rounding.registry import get_rounding

__all__ = ["validate_config", "activation_plan", "ActivationPlan", "layer_problem", "fit_to_layer", "runs_as_nbits"]


def layer_problem(layer: LayerInfo, cfg: LayerConfig) -> str | None:
    """Why ``cfg`` cannot apply to ``layer``, or None when it can."""
    if not layer.has_weight and cfg.w_bits is not None:
        return "has no constant weight: w_bits must be float (activation-only layer)"
    if not layer.supports_activations and cfg.act is not ActMode.FLOAT:
        return "is an embedding lookup: act must be float"
    if cfg.granularity.block_size and cfg.w_bits not in (None, 16) and not layer.supports_blocks:
        return f"is a {layer.op_type}: block-wise scales apply to MatMul/Gemm/Gather weights only"
    eff = cfg.effective()
    why = get_rounding(eff.rounding).problem(layer)
    if why is not None:
        return why
    if eff.bias_correction and not supports_data_aware(layer):
        return f"is a {layer.op_type}: bias correction applies to Conv/Gemm/MatMul (2-D) weights only"
    if eff.bias_correction and layer.op_type == "MatMul" and cfg.act is ActMode.STATIC:
        return ("is a MatMul with static activations: its bias correction would make ONNX Runtime fuse "
                "MatMulIntegerToFloat, which rejects per-column scales on batched inputs")
    if cfg.act is ActMode.DYNAMIC:
        if layer.op_type not in ("MatMul", "Gemm"):
            return f"is a {layer.op_type}: dynamic activations apply to MatMul/Gemm layers only"
        if cfg.granularity.block_size:
            return "dynamic activations need per-tensor or per-channel weight scales"
    return None


def validate_config(config: QuantConfig, layers: Sequence[LayerInfo]) -> None:
    """Check that every configured layer exists and its settings apply to it.

    Raises:
        ConfigError: naming the first unknown layer (with the known ones) or the layer
            and the setting that does not apply.
    """
    by_name = {layer.name: layer for layer in layers}
    unknown = sorted(set(config.layers) - set(by_name))
    if unknown:
        sample = ", ".join(list(by_name)[:5])
        raise ConfigError(
            f"layers: {len(unknown)} name(s) not in the model, first {unknown[0]!r} "
            f"(model layers include {sample}{', ...' if len(by_name) > 5 else ''})"
        )
    for name, cfg in config.layers.items():
        problem = layer_problem(by_name[name], cfg)
        if problem:
            raise ConfigError(f"layers.{name}: layer {problem}")


@dataclass(frozen=True)
class ActivationPlan:
    """Static activation grids: tensor -> bits, and the layers asking for each."""

    bits: dict[str, int]
    inputs: dict[str, list[str]]

    def tensors(self) -> list[str]:
        """Quantized activation tensors in a stable order."""
        return list(self.bits)

    def isolated(self, layer: LayerInfo) -> bool:
        """Whether ``layer``'s activation inputs and output stay float: no static grid of
        its own or of a neighbour touches them, so the runtime has no integer kernel to
        fuse the layer into."""
        return not ({*layer.act_inputs, layer.output} & self.bits.keys())


def runs_as_nbits(layer: LayerInfo, cfg: LayerConfig, plan: ActivationPlan, config: QuantConfig) -> bool:
    """Whether ``layer`` runs as ONNX Runtime's ``MatMulNBits``: a weight-only, block-wise
    MatMul of at most 4 bits beside static activations, or an isolated one when ``config``
    sets an ``accuracy_level`` (:attr:`~qaev.config.QuantConfig.nbits_accuracy`; decoding a
    token ran 2.95x faster than float that way on the llama-pydocs decoder). Other isolated
    weight-only layers are folded to float weights when the session loads
    (:mod:`qaev.quantize.folded`), which pays for many tokens per run."""
    return nbits_shaped(layer, cfg) and (not plan.isolated(layer) or bool(config.nbits_accuracy))


def activation_plan(config: QuantConfig, layers: Sequence[LayerInfo]) -> ActivationPlan:
    """Which activation tensors carry a static QDQ pair and at how many bits.

    A static layer quantizes its activation inputs and its (fused) output, as ONNX
    Runtime's own quantizer does, so the runtime can fuse the layer into an integer
    kernel. A tensor asked for at two widths gets the wider one.
    """
    bits: dict[str, int] = {}
    asked: dict[str, list[str]] = {}
    for layer in layers:
        cfg = config.layer(layer.name)
        if cfg is None or cfg.act is not ActMode.STATIC:
            continue
        for tensor in (*layer.act_inputs, layer.output):
            bits[tensor] = max(bits.get(tensor, 0), cfg.a_bits)
            asked.setdefault(tensor, []).append(layer.name)
    return ActivationPlan(bits=bits, inputs=asked)



def fit_to_layer(cfg: LayerConfig, layer: LayerInfo) -> LayerConfig | None:
    """The nearest setting of ``cfg`` that applies to ``layer`` (None: the layer stays float).

    Activation-only layers drop the weight bits; embedding lookups drop activations;
    block-wise scales fall back to per-channel where blocks do not apply; dynamic
    activations fall back to weight-only outside MatMul/Gemm; a rounding method falls back to
    nearest, and bias correction to off, where they do not apply.
    """
    changes: dict = {}
    if get_rounding(cfg.rounding).problem(layer) is not None:
        changes["rounding"] = Rounding.NEAREST
    if cfg.bias_correction and not supports_data_aware(layer):
        changes["bias_correction"] = False
    if cfg.bias_correction and layer.op_type == "MatMul" and cfg.act is ActMode.STATIC:
        changes["bias_correction"] = False  # see layer_problem: the runtime's fused kernel rejects it
    if not layer.has_weight:
        changes["w_bits"] = None
        if cfg.act is ActMode.DYNAMIC:
            changes["act"] = ActMode.STATIC
    if not layer.supports_activations:
        changes["act"] = ActMode.FLOAT
    act = changes.get("act", cfg.act)
    if cfg.granularity.block_size and (not layer.supports_blocks or act is ActMode.DYNAMIC):
        changes["granularity"] = Granularity.PER_CHANNEL
    if act is ActMode.DYNAMIC and layer.op_type not in ("MatMul", "Gemm"):
        changes["act"] = ActMode.FLOAT
    fitted = replace(cfg, **changes) if changes else cfg
    return None if fitted.is_float else fitted
