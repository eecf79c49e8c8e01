"""A minimal BERT sentence encoder in torch, laid out to load Hugging Face ``BertModel`` keys.

Imported only when a model is exported (it imports torch at module level).

The encoder is BERT (Devlin et al., NAACL 2019): token + position (+ segment 0)
embeddings, then post-LayerNorm transformer layers of multi-head self-attention and a
GELU feed-forward block. The sentence embedding is the attention-mask-weighted mean of
the last hidden states, L2-normalised, as in Sentence-BERT (Reimers & Gurevych, EMNLP
2019). Padded keys get an additive bias of -10000 before the softmax: it zeroes their
weight exactly in float32 while keeping every tensor of the graph in a range a
quantizer can calibrate (``finfo.min`` would dominate any min/max statistics).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["BertShape", "SentenceEncoder"]

_MASK_BIAS = -10000.0


@dataclass(frozen=True)
class BertShape:
    """Sizes of a BERT encoder (``config.json`` of a Hugging Face checkpoint)."""

    vocab: int = 30522
    positions: int = 512
    segments: int = 2
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    eps: float = 1e-12


class _Embeddings(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(shape.vocab, shape.hidden)
        self.position_embeddings = nn.Embedding(shape.positions, shape.hidden)
        self.token_type_embeddings = nn.Embedding(shape.segments, shape.hidden)
        self.LayerNorm = nn.LayerNorm(shape.hidden, eps=shape.eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        return self.LayerNorm(x + self.token_type_embeddings.weight[0])  # one segment


class _SelfAttention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.query = nn.Linear(shape.hidden, shape.hidden)
        self.key = nn.Linear(shape.hidden, shape.hidden)
        self.value = nn.Linear(shape.hidden, shape.hidden)
        self.heads = shape.heads
        self.head_dim = shape.hidden // shape.heads

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        context = torch.matmul(torch.softmax(scores + bias, dim=-1), v)
        batch, _, length, _ = context.shape
        return context.transpose(1, 2).reshape(batch, length, self.heads * self.head_dim)


class _DenseNorm(nn.Module):
    """``LayerNorm(residual + dense(x))``: the output half of an attention or FFN block."""

    def __init__(self, cin: int, shape: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(cin, shape.hidden)
        self.LayerNorm = nn.LayerNorm(shape.hidden, eps=shape.eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dense(x))


class _Attention(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.self = _SelfAttention(shape)
        self.output = _DenseNorm(shape.hidden, shape)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class _Intermediate(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(shape.hidden, shape.intermediate)
        self.act = nn.GELU()  # exact (erf) GELU, as BERT's "gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.attention = _Attention(shape)
        self.intermediate = _Intermediate(shape)
        self.output = _DenseNorm(shape.intermediate, shape)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, shape: BertShape) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(shape) for _ in range(shape.layers))


class SentenceEncoder(nn.Module):
    """BERT encoder + masked mean pooling + L2 normalisation.

    ``forward(input_ids, attention_mask)`` takes int64 ``[B, L]`` tensors and returns
    float32 ``[B, hidden]`` unit-length sentence embeddings. State-dict keys are those of
    a Hugging Face ``BertModel`` (``embeddings.*``, ``encoder.layer.<i>.*``); the pooler
    is not used.
    """

    def __init__(self, shape: BertShape | None = None) -> None:
        super().__init__()
        shape = shape or BertShape()
        if shape.hidden % shape.heads:
            raise ValueError(f"hidden {shape.hidden} is not a multiple of heads {shape.heads}")
        self.embeddings = _Embeddings(shape)
        self.encoder = _Encoder(shape)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.to(torch.float32)
        bias = ((1.0 - mask) * _MASK_BIAS)[:, None, None, :]  # [B, 1, 1, L] over keys
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        weights = mask.unsqueeze(-1)
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2.0, dim=-1, eps=1e-12)
