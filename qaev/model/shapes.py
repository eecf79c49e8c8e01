"""Quantizable layers of a LLaMA-shaped decoder as a layer list, without a model file.

A decoder of ``layers`` blocks has, per block, seven projections (attention ``q_proj``,
``k_proj``, ``v_proj``, ``o_proj``; SwiGLU ``gate_proj``, ``up_proj``, ``down_proj``), plus
the token embedding and an untied LM head (Touvron et al., "LLaMA: Open and Efficient
Foundation Language Models", 2023, table 2): LLaMA-7B's 32 blocks give 226 layers. The
list carries exactly what sizes and the hardware tables' estimates read (weight shapes,
parameters, multiply-accumulates per sample), so searches, estimates and reports run at
the real 7B shapes where no 13 GB model can be built. A sample is ``tokens`` tokens: one
for a decoding step. Names follow the Hugging Face checkpoints (``model.layers.0.mlp.up_proj``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from qaev.errors import ConfigError
from qaev.model.layers import LayerInfo

__all__ = ["DecoderShape", "LLAMA_7B", "decoder_layers", "decoder_other_bytes", "layers_to_json", "layers_from_json"]

_PROJECTIONS = (("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"), ("self_attn", "o_proj"),
                ("mlp", "gate_proj"), ("mlp", "up_proj"), ("mlp", "down_proj"))


@dataclass(frozen=True, kw_only=True)
class DecoderShape:
    """Dimensions of a LLaMA-architecture decoder.

    Attributes:
        vocab: vocabulary size; d_model: width of the residual stream; layers: blocks;
        heads, kv_heads: query and key/value heads; ffn_hidden: SwiGLU hidden width.
    """

    vocab: int
    d_model: int
    layers: int
    heads: int
    kv_heads: int
    ffn_hidden: int

    def __post_init__(self) -> None:
        values = asdict(self)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values.values()):
            raise ConfigError(f"decoder shape: every dimension must be a positive integer, got {values}")
        if self.d_model % self.heads or self.heads % self.kv_heads:
            raise ConfigError(f"decoder shape: heads {self.heads} must divide d_model {self.d_model} and be a "
                              f"multiple of kv_heads {self.kv_heads}")

    @property
    def parameters(self) -> int:
        """Weights of the projections, embedding and head (norms not counted)."""
        kv = self.d_model // self.heads * self.kv_heads
        block = 2 * self.d_model * self.d_model + 2 * self.d_model * kv + 3 * self.d_model * self.ffn_hidden
        return self.layers * block + 2 * self.vocab * self.d_model


#: LLaMA-7B (Touvron et al. 2023): 32 blocks, d_model 4096, 32 heads, SwiGLU 11008, 32000 tokens.
LLAMA_7B = DecoderShape(vocab=32000, d_model=4096, layers=32, heads=32, kv_heads=32, ffn_hidden=11008)


def _matmul(name: str, k: int, n: int, tokens: int) -> LayerInfo:
    return LayerInfo(name=name, op_type="MatMul", weight=f"{name}.weight", weight_shape=(k, n), channel_axis=1,
                     reduce_axis=0, act_inputs=(f"{name}.input",), output=f"{name}.output", macs=tokens * k * n,
                     params=k * n)


def decoder_layers(shape: DecoderShape, *, tokens: int = 1) -> list[LayerInfo]:
    """The quantizable layers of ``shape`` in graph order: embedding, each block's seven
    projections, LM head (``7 * layers + 2`` of them); MACs for ``tokens`` tokens a sample."""
    if tokens < 1:
        raise ConfigError(f"tokens: expected a positive count, got {tokens}")
    d, kv = shape.d_model, shape.d_model // shape.heads * shape.kv_heads
    widths = {"q_proj": (d, d), "k_proj": (d, kv), "v_proj": (d, kv), "o_proj": (d, d),
              "gate_proj": (d, shape.ffn_hidden), "up_proj": (d, shape.ffn_hidden), "down_proj": (shape.ffn_hidden, d)}
    out = [LayerInfo(name="model.embed_tokens", op_type="Gather", weight="model.embed_tokens.weight",
                     weight_shape=(shape.vocab, d), channel_axis=0, reduce_axis=1, act_inputs=(),
                     output="model.embed_tokens.output", macs=0, params=shape.vocab * d)]
    for i in range(shape.layers):
        for part, proj in _PROJECTIONS:
            out.append(_matmul(f"model.layers.{i}.{part}.{proj}", *widths[proj], tokens))
    out.append(_matmul("lm_head", d, shape.vocab, tokens))
    return out


def decoder_other_bytes(shape: DecoderShape) -> int:
    """Bytes of the weights that are no layer's: the RMSNorm scales (two per block and the
    final one), float32."""
    return (2 * shape.layers + 1) * shape.d_model * 4


def layers_to_json(layers: Sequence[LayerInfo]) -> list[dict]:
    """A layer list as JSON-ready dicts (what a run on a layer list records)."""
    return [{**asdict(layer), "weight_shape": list(layer.weight_shape), "act_inputs": list(layer.act_inputs)}
            for layer in layers]


def layers_from_json(rows: Sequence[dict]) -> list[LayerInfo]:
    """The layers :func:`layers_to_json` wrote.

    Raises:
        ConfigError: a row is not a layer.
    """
    try:
        return [LayerInfo(**{**row, "weight_shape": tuple(row["weight_shape"]),
                             "act_inputs": tuple(row["act_inputs"])}) for row in rows]
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"layers: not a layer list ({exc})") from None
