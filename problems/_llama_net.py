"""A small LLaMA-architecture decoder language model in torch.

Imported only when a model is trained or exported (it imports torch at module level).

The architecture is LLaMA (Touvron et al., "LLaMA: Open and Efficient Foundation Language
Models", 2023; grouped-query attention as in Llama 2, Touvron et al. 2023): a token
embedding, then pre-norm decoder blocks of

* RMSNorm (Zhang & Sennrich, 2019) -> causal self-attention with grouped-query heads
  (Ainslie et al., 2023) and rotary position embeddings on queries and keys (Su et al.,
  "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021) -> residual,
* RMSNorm -> SwiGLU feed-forward (Shazeer, "GLU Variants Improve Transformer", 2020):
  ``down(silu(gate(x)) * up(x))`` -> residual,

then a final RMSNorm and an untied LM head. Every projection is a bias-free
``nn.Linear``, so an ONNX export shows each as a ``MatMul`` with a constant weight.

Attention is written with plain ``matmul`` and ``softmax`` (no fused SDPA), which the
ONNX exporters turn into a clean ``MatMul -> Add -> Softmax -> MatMul`` chain. Masked
keys get an additive bias of -10000 rather than ``-inf``/``finfo.min``: the softmax weight
is exactly 0 in float32 and every tensor stays in a range a quantizer can calibrate, and
a query with no visible key (a padded position) gives finite numbers, never NaN.

Rotary embeddings use the "rotate half" layout: the head is split into two halves
``(x1, x2)`` rotated as ``(x1 cos - x2 sin, x2 cos + x1 sin)`` with frequency
``theta ** (-2i / head_dim)`` for pair ``i``. The angles are computed as an elementwise
product of ``position_ids`` with the inverse frequencies (not a matmul), so no extra
``MatMul`` with a constant operand appears in exported graphs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["LlamaConfig", "LlamaLM", "RMSNorm", "apply_rope", "attention_bias", "rope_angles"]

#: Additive attention bias of a masked key (see the module docstring).
MASK_BIAS = -10000.0

KeyValue = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class LlamaConfig:
    """Hyper-parameters of the decoder (defaults: the ~5M-parameter pydocs model).

    Attributes:
        vocab: Vocabulary size (tokens of the byte-level BPE).
        d_model: Width of the residual stream.
        layers: Number of decoder blocks.
        heads: Query heads.
        kv_heads: Key/value heads (grouped-query attention; divides ``heads``).
        ffn_hidden: Hidden width of the SwiGLU feed-forward block.
        context: Longest sequence the model is trained on.
        rope_theta: Base of the rotary frequencies.
        norm_eps: Epsilon of RMSNorm.
    """

    vocab: int = 4096
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    ffn_hidden: int = 688
    context: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.d_model % self.heads or self.heads % self.kv_heads:
            raise ValueError(f"d_model {self.d_model}, heads {self.heads} and kv_heads "
                             f"{self.kv_heads} must divide evenly")
        if (self.d_model // self.heads) % 2:
            raise ValueError("the head width must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.heads

    def to_dict(self) -> dict:
        """The fields as a plain dict (for ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> LlamaConfig:
        """Builds a config from a dict, ignoring keys that are not fields."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: v for k, v in values.items() if k in names})


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learned gain and no bias (Zhang & Sennrich, 2019)."""

    def __init__(self, width: int, *, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * scale * self.weight


def rope_angles(position_ids: torch.Tensor, inv_freq: torch.Tensor) -> KeyValue:
    """Cosines and sines of the rotary angles (RoFormer, Su et al. 2021, eq. 34).

    Args:
        position_ids: int64 ``[B, T]`` absolute positions.
        inv_freq: float ``[head_dim / 2]`` inverse frequencies.

    Returns:
        ``(cos, sin)``, each float ``[B, 1, T, head_dim]`` (the half-width angles
        repeated twice, matching the rotate-half layout).
    """
    angles = position_ids.to(inv_freq.dtype).unsqueeze(-1) * inv_freq  # elementwise, no MatMul
    angles = torch.cat((angles, angles), dim=-1).unsqueeze(1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotates ``x`` [B, H, T, D] by the angles (rotate-half form of RoFormer's rotation)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def attention_bias(attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Additive causal + padding bias for the last ``query_len`` of the masked positions.

    Args:
        attention_mask: int64 ``[B, S]`` over past and current tokens, 1 for a real token.
        query_len: Number of current (query) tokens ``T``; they are the last ``T`` of ``S``.

    Returns:
        float32 ``[B, 1, T, S]``: 0 where the query may attend, ``MASK_BIAS`` elsewhere.
    """
    total = attention_mask.shape[1]
    keys = torch.arange(total, device=attention_mask.device)
    queries = keys[total - query_len:]
    causal = keys.unsqueeze(0) <= queries.unsqueeze(1)  # [T, S]
    allowed = causal.unsqueeze(0) & (attention_mask.unsqueeze(1) > 0)  # [B, T, S]
    zero = torch.zeros((), dtype=torch.float32, device=attention_mask.device)
    masked = torch.full((), MASK_BIAS, dtype=torch.float32, device=attention_mask.device)
    return torch.where(allowed, zero, masked).unsqueeze(1)


class Attention(nn.Module):
    """Grouped-query causal self-attention with rotary queries and keys."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.heads, config.kv_heads, config.head_dim
        self.q_proj = nn.Linear(config.d_model, config.heads * config.head_dim, bias=False)
        self.k_proj = nn.Linear(config.d_model, config.kv_heads * config.head_dim, bias=False)
        self.v_proj = nn.Linear(config.d_model, config.kv_heads * config.head_dim, bias=False)
        self.o_proj = nn.Linear(config.heads * config.head_dim, config.d_model, bias=False)

    def _split(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, rope: KeyValue, bias: torch.Tensor,
                past: KeyValue | None = None) -> tuple[torch.Tensor, KeyValue]:
        """Attends ``x`` [B, T, d] to the cached and current keys; returns output and (k, v)."""
        batch, length, _ = x.shape
        q = apply_rope(self._split(self.q_proj(x), self.heads), *rope)
        k = apply_rope(self._split(self.k_proj(x), self.kv_heads), *rope)
        v = self._split(self.v_proj(x), self.kv_heads)
        if past is not None:
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        groups = self.heads // self.kv_heads
        # Query heads g*kv .. g*kv+groups-1 share key/value head kv: fold the group into the
        # query-length axis so one batched matmul serves it, without copying k or v.
        q = q.reshape(batch, self.kv_heads, groups * length, self.head_dim)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim ** -0.5)
        scores = scores.view(batch, self.heads, length, -1) + bias
        weights = torch.softmax(scores, dim=-1).view(batch, self.kv_heads, groups * length, -1)
        context = torch.matmul(weights, v).view(batch, self.heads, length, self.head_dim)
        context = context.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)
        return self.o_proj(context), (k, v)


class FeedForward(nn.Module):
    """SwiGLU feed-forward block: ``down(silu(gate(x)) * up(x))`` (Shazeer 2020)."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.up_proj = nn.Linear(config.d_model, config.ffn_hidden, bias=False)
        self.down_proj = nn.Linear(config.ffn_hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderBlock(nn.Module):
    """Pre-norm decoder block: attention and SwiGLU, each with an RMSNorm and a residual."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.d_model, eps=config.norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.d_model, eps=config.norm_eps)
        self.mlp = FeedForward(config)

    def forward(self, x: torch.Tensor, rope: KeyValue, bias: torch.Tensor,
                past: KeyValue | None = None) -> tuple[torch.Tensor, KeyValue]:
        attended, present = self.self_attn(self.input_layernorm(x), rope, bias, past)
        x = x + attended
        return x + self.mlp(self.post_attention_layernorm(x)), present


class LlamaLM(nn.Module):
    """The decoder language model: embedding, decoder blocks, final RMSNorm, untied LM head.

    Args:
        config: Hyper-parameters.
    """

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab, config.d_model)
        self.layers = nn.ModuleList(DecoderBlock(config) for _ in range(config.layers))
        self.norm = RMSNorm(config.d_model, eps=config.norm_eps)
        self.lm_head = nn.Linear(config.d_model, config.vocab, bias=False)
        exponents = torch.arange(0, config.head_dim, 2, dtype=torch.float32) / config.head_dim
        self.register_buffer("inv_freq", config.rope_theta ** -exponents, persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor, past_key_values: list[KeyValue] | None = None,
                ) -> torch.Tensor | tuple[torch.Tensor, list[KeyValue]]:
        """Next-token logits.

        Args:
            input_ids: int64 ``[B, T]`` token ids.
            attention_mask: int64 ``[B, P + T]`` over the ``P`` cached and ``T`` current
                tokens: 1 for a real token, 0 for padding. Combined with the causal mask.
            position_ids: int64 ``[B, T]`` positions of the current tokens (used by RoPE).
            past_key_values: Optional per-layer ``(key, value)``, each
                ``[B, kv_heads, P, head_dim]``.

        Returns:
            float32 logits ``[B, T, vocab]``; with ``past_key_values`` given, also the
            per-layer present ``(key, value)`` of ``P + T`` positions.
        """
        x = self.embed_tokens(input_ids)
        rope = rope_angles(position_ids, self.inv_freq)
        bias = attention_bias(attention_mask, input_ids.shape[1])
        presents = []
        for i, layer in enumerate(self.layers):
            x, present = layer(x, rope, bias, None if past_key_values is None else past_key_values[i])
            presents.append(present)
        logits = self.lm_head(self.norm(x))
        if past_key_values is None:
            return logits
        return logits, presents

    def init_weights(self, *, std: float = 0.02) -> None:
        """Normal(0, std) projections and embedding; residual outputs scaled by 1/sqrt(2 layers).

        The residual-branch scaling follows GPT-2 (Radford et al. 2019); norms start at 1.
        """
        residual_std = std / (2 * self.config.layers) ** 0.5
        for name, param in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(param, std=residual_std)
            elif param.dim() == 2:
                nn.init.normal_(param, std=std)
            else:
                nn.init.ones_(param)
