"""Decoding with a key/value cache: the feed of one decoding step, and greedy generation.

The decoder graph is the Hugging Face export form: ``input_ids``, ``attention_mask``
(past and current tokens), ``position_ids`` and ``past_key_values.<i>.key|value``
``[batch, kv_heads, past, head_dim]`` in; ``logits`` and ``present.<i>.key|value`` (the
cache grown by the current tokens) out. A prompt is one call with an empty past (prefill);
each generated token is one call of one token with the cache so far (Pope et al.,
"Efficiently Scaling Transformer Inference", 2022, section 2, on why decoding is timed
per token).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from qaev.data.text import CACHE_PREFIX
from qaev.errors import ModelError

__all__ = ["cache_pairs", "prefill", "decode_feed", "Generation", "generate"]

_PRESENT = "present."


def cache_pairs(session) -> list[tuple[str, str]]:
    """``(past input, present output)`` names of an ONNX Runtime session's cache, in input order.

    Raises:
        ModelError: the graph has no past inputs, or one without its present output.
    """
    outputs = {o.name for o in session.get_outputs()}
    pairs = [(i.name, _PRESENT + i.name[len(CACHE_PREFIX):]) for i in session.get_inputs()
             if i.name.startswith(CACHE_PREFIX)]
    if not pairs or any(present not in outputs for _, present in pairs):
        raise ModelError("decoding needs a graph with past_key_values.* inputs and matching present.* outputs")
    return pairs


def _empty_past(session, batch: int) -> dict[str, np.ndarray]:
    out = {}
    for value in session.get_inputs():
        if value.name.startswith(CACHE_PREFIX):
            heads, width = value.shape[1], value.shape[3]
            if not isinstance(heads, int) or not isinstance(width, int):
                raise ModelError(f"input {value.name!r}: heads and width must be fixed, got {value.shape}")
            out[value.name] = np.zeros((batch, heads, 0, width), np.float32)
    return out


def _step_feed(ids: np.ndarray, past_length: int) -> dict[str, np.ndarray]:
    batch, length = ids.shape
    positions = np.broadcast_to(np.arange(past_length, past_length + length, dtype=np.int64), ids.shape)
    return {"input_ids": np.ascontiguousarray(ids, dtype=np.int64),
            "attention_mask": np.ones((batch, past_length + length), np.int64),
            "position_ids": np.ascontiguousarray(positions)}


def prefill(session, prompt: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Runs ``prompt`` (int ``[batch, length]``) with an empty cache.

    Returns:
        The last position's logits ``[batch, vocab]`` and the cache, keyed by past input name.
    """
    prompt = np.atleast_2d(np.asarray(prompt, np.int64))
    pairs = cache_pairs(session)
    outputs = session.run(["logits", *[p for _, p in pairs]],
                          {**_step_feed(prompt, 0), **_empty_past(session, prompt.shape[0])})
    return outputs[0][:, -1], {past: value for (past, _), value in zip(pairs, outputs[1:])}


def decode_feed(session, prompt: np.ndarray) -> dict[str, np.ndarray]:
    """The feed of the decoding step after ``prompt``: its greedy next token, the mask and
    position that follow, and the prompt's cache (what ``host_latency_ms`` times for a decoder)."""
    logits, cache = prefill(session, prompt)
    length = np.atleast_2d(prompt).shape[1]
    return {**_step_feed(np.argmax(logits, axis=-1)[:, None], length), **cache}


@dataclass(frozen=True)
class Generation:
    """Tokens generated greedily after a prompt, and the seconds the prefill and the decoding took."""

    tokens: np.ndarray
    prefill_s: float
    decode_s: float

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens per second of decoding (the first comes from the prefill's logits)."""
        steps = self.tokens.shape[1] - 1
        return steps / self.decode_s if self.decode_s > 0 else float("inf")


def generate(session, prompt: np.ndarray, n_tokens: int) -> Generation:
    """Greedy decoding of ``n_tokens`` tokens after ``prompt`` with the cache, timed.

    Raises:
        ModelError: ``n_tokens`` < 2, or a graph without a cache.
    """
    if n_tokens < 2:
        raise ModelError(f"generate: n_tokens must be >= 2, got {n_tokens}")
    prompt = np.atleast_2d(np.asarray(prompt, np.int64))
    pairs = cache_pairs(session)
    start = time.perf_counter()
    logits, cache = prefill(session, prompt)
    prefill_s = time.perf_counter() - start
    tokens = [np.argmax(logits, axis=-1)]
    start = time.perf_counter()
    for _ in range(n_tokens - 1):
        past_length = prompt.shape[1] + len(tokens) - 1
        outputs = session.run(["logits", *[p for _, p in pairs]],
                              {**_step_feed(tokens[-1][:, None], past_length), **cache})
        cache = {past: value for (past, _), value in zip(pairs, outputs[1:])}
        tokens.append(np.argmax(outputs[0][:, -1], axis=-1))
    return Generation(tokens=np.stack(tokens, axis=1), prefill_s=prefill_s, decode_s=time.perf_counter() - start)
