"""Exporting the small LLaMA decoder (:mod:`._llama_net`) to ONNX, with and without a cache.

Imported only when a model is exported (it imports torch at module level).

Two graphs come from one set of weights (``weights.npz`` + ``config.json`` written by
``problems/train_llama.py``, or any :class:`LlamaLM` in memory):

* **full sequence** (:func:`export_full`): ``input_ids``, ``attention_mask``,
  ``position_ids`` (int64 ``[batch, sequence]``) -> ``logits`` float32
  ``[batch, sequence, vocab]``.
* **with a key/value cache** (:func:`export_cached`), for decoding: the same three inputs
  plus ``past_key_values.{i}.key`` / ``past_key_values.{i}.value`` (float32
  ``[batch, kv_heads, past_sequence, head_dim]``) -> ``logits`` plus ``present.{i}.key`` /
  ``present.{i}.value`` (``[batch, kv_heads, past_sequence + sequence, head_dim]``).
  ``attention_mask`` covers the past and the current tokens (``[batch, past_sequence +
  sequence]``), as in Hugging Face exports. The first call passes empty past tensors
  (``past_sequence`` = 0), which ONNX Runtime accepts.

Padding: 1 in ``attention_mask`` marks a real token, 0 padding. Left and right padding
both work; with left padding pass ``position_ids`` that count real tokens only
(``cumsum(mask) - 1``, clipped at 0), so a padded row gives the same logits at its real
tokens as the unpadded row.

Both graphs are written by ``torch.onnx.export(dynamo=True)`` (opset 18, weights inside
the file, float32): each projection is a ``MatMul`` with an initializer weight (the
transposed ``nn.Linear`` weight), the embedding a ``Gather`` on an initializer table and
the LM head a ``MatMul`` on an initializer. Weights and layer nodes are named after the
torch modules (``layers.0.self_attn.q_proj.weight``, stored ``[in, out]``, read by the node
``layers.0.self_attn.q_proj/MatMul``; ``embed_tokens.weight``; ``lm_head.weight``).
Positions past the training context (``context`` in the config) run but were never
trained on.
"""
from __future__ import annotations

import ast
import json
import pathlib
import warnings

import numpy as np
import torch
from torch import nn

from ._llama_net import LlamaConfig, LlamaLM

__all__ = [
    "INPUTS",
    "OPSET",
    "cache_names",
    "check_exports",
    "decode_latency",
    "empty_past",
    "export_cached",
    "export_full",
    "export_llama",
    "load_llama",
    "ort_session",
]

#: ONNX opset of the exported graphs.
OPSET = 18
#: Inputs of both graphs (the cached graph adds the past key/values after them).
INPUTS = ("input_ids", "attention_mask", "position_ids")
_PREFIX = "lm."  # the wrappers hold the model as ``self.lm``


def load_llama(weights: str | pathlib.Path, config: str | pathlib.Path) -> LlamaLM:
    """Builds the model from ``weights.npz`` (float16 arrays) and ``config.json``.

    Args:
        weights: ``.npz`` with one array per ``state_dict`` key.
        config: JSON with the hyper-parameters under ``"architecture"`` (or at top level).

    Returns:
        The float32 model in eval mode.
    """
    values = json.loads(pathlib.Path(config).read_text())
    model = LlamaLM(LlamaConfig.from_dict(values.get("architecture", values)))
    with np.load(weights) as arrays:
        state = {k: torch.from_numpy(arrays[k].astype(np.float32)) for k in arrays.files}
    model.load_state_dict(state, strict=True)
    return model.eval()


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """Names of the past (inputs) and present (outputs) key/value tensors, in graph order."""
    past = [f"past_key_values.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    present = [f"present.{i}.{kind}" for i in range(layers) for kind in ("key", "value")]
    return past, present


class _FullSequence(nn.Module):
    def __init__(self, lm: LlamaLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, position_ids):
        return self.lm(input_ids, attention_mask, position_ids)


class _WithCache(nn.Module):
    """Flat signature: the past as one list ``[k0, v0, k1, v1, ...]``, outputs flat too."""

    def __init__(self, lm: LlamaLM) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids, attention_mask, position_ids, past: list[torch.Tensor]):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(len(past) // 2)]
        logits, presents = self.lm(input_ids, attention_mask, position_ids, pairs)
        return (logits, *[t for pair in presents for t in pair])


def _example(config: LlamaConfig, *, batch: int = 2, length: int = 5, past: int = 0):
    ids = torch.randint(0, config.vocab, (batch, length), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(batch, past + length, dtype=torch.int64)
    positions = torch.arange(past, past + length).expand(batch, length).contiguous()
    return ids, mask, positions


def empty_past(config: LlamaConfig, *, batch: int = 1, length: int = 0) -> list[np.ndarray]:
    """Zero past key/values ``[batch, kv_heads, length, head_dim]`` per layer, flat (k, v, ...)."""
    shape = (batch, config.kv_heads, length, config.head_dim)
    return [np.zeros(shape, dtype=np.float32) for _ in range(2 * config.layers)]


def _export(module: nn.Module, args: tuple, path: pathlib.Path, *, names: tuple, dynamic_shapes) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, str(path), dynamo=True, external_data=False,
                                    opset_version=OPSET, input_names=list(names[0]),
                                    output_names=list(names[1]), dynamic_shapes=dynamic_shapes,
                                    optimize=True, verbose=False, report=False)
    if program is None:
        raise RuntimeError(f"{path}: torch.onnx.export returned no program")
    _tidy(path)


def _module_scope(node) -> str | None:
    """The innermost torch module a node came from (``layers.0.self_attn.q_proj``), if recorded."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s for s in ast.literal_eval(prop.value)[:-1] if s.startswith(_PREFIX)]
            return scopes[-1][len(_PREFIX):] if scopes else None
    return None


def _tidy(path: pathlib.Path) -> None:
    """Names weights and layer nodes after the torch modules; drops exporter metadata.

    A projection's ``MatMul`` becomes ``<module>/MatMul`` and its weight initializer
    ``<module>.weight`` (the ``nn.Linear`` weight transposed to ``[in, out]``); the
    embedding table becomes ``embed_tokens.weight``. Per-node metadata (source stack
    traces with local paths) is removed, and the attention mask's length axis of the
    cached graph is named ``past_sequence + sequence`` like the present outputs.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    renames: dict[str, str] = {name: name[len(_PREFIX):] for name in inits if name.startswith(_PREFIX)}
    for index, node in enumerate(graph.node):
        scope = _module_scope(node)
        if node.op_type == "MatMul" and scope:
            weight = node.input[1] if node.input[1] in inits else None
            node.name = f"{scope}/MatMul" if weight else f"{scope}/MatMul_{index}"
            if weight:
                renames[weight] = f"{scope}.weight"
        elif node.op_type == "Gather" and node.input[0] in inits and scope:
            node.name = f"{scope}/Gather"
        del node.metadata_props[:]
    if len(set(renames.values())) != len(renames) or set(renames.values()) & (set(inits) - set(renames)):
        raise RuntimeError(f"{path}: initializer names would clash after renaming")
    for tensor in graph.initializer:
        tensor.name = renames.get(tensor.name, tensor.name)
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
    for value in graph.input:
        if value.name == "attention_mask" and any(i.name.startswith("past_key_values.") for i in graph.input):
            value.type.tensor_type.shape.dim[1].dim_param = "past_sequence + sequence"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def export_full(model: LlamaLM, path: str | pathlib.Path) -> pathlib.Path:
    """Writes the full-sequence graph (``input_ids``, ``attention_mask``, ``position_ids`` -> ``logits``).

    Args:
        model: The model (put in eval mode).
        path: Destination ``.onnx`` file.

    Returns:
        The path written.
    """
    path = pathlib.Path(path)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = {0: batch, 1: seq}
    _export(_FullSequence(model.eval()), _example(model.config), path, names=(INPUTS, ["logits"]),
            dynamic_shapes={"input_ids": axes, "attention_mask": axes, "position_ids": axes})
    return path


def export_cached(model: LlamaLM, path: str | pathlib.Path) -> pathlib.Path:
    """Writes the decoding graph with past key/values in and present key/values out.

    Args:
        model: The model (put in eval mode).
        path: Destination ``.onnx`` file.

    Returns:
        The path written.
    """
    path = pathlib.Path(path)
    config = model.config
    batch = torch.export.Dim("batch")
    seq, past_len = torch.export.Dim("sequence"), torch.export.Dim("past_sequence")
    ids, mask, positions = _example(config, past=3)
    past = [torch.randn(2, config.kv_heads, 3, config.head_dim) for _ in range(2 * config.layers)]
    past_names, present_names = cache_names(config.layers)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: torch.export.Dim.AUTO},
              "position_ids": {0: batch, 1: seq}, "past": [{0: batch, 2: past_len}] * len(past)}
    _export(_WithCache(model.eval()), (ids, mask, positions, past), path,
            names=((*INPUTS, *past_names), ["logits", *present_names]), dynamic_shapes=shapes)
    return path


def ort_session(path: str | pathlib.Path, *, threads: int = 1):
    """An ONNX Runtime CPU session on ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def export_llama(weights: str | pathlib.Path, config: str | pathlib.Path,
                 out_dir: str | pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """Builds the model from ``weights.npz`` + ``config.json`` and writes both graphs.

    Returns:
        ``(out_dir / "llama.onnx", out_dir / "llama-kv.onnx")``: full sequence, with cache.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = load_llama(weights, config)
    return export_full(model, out_dir / "llama.onnx"), export_cached(model, out_dir / "llama-kv.onnx")


def _feed(ids: np.ndarray, *, past: int = 0) -> dict[str, np.ndarray]:
    batch, length = ids.shape
    positions = np.broadcast_to(np.arange(past, past + length, dtype=np.int64), (batch, length))
    return {"input_ids": ids, "attention_mask": np.ones((batch, past + length), np.int64),
            "position_ids": np.ascontiguousarray(positions)}


def check_exports(model: LlamaLM, full: str | pathlib.Path, cached: str | pathlib.Path, *,
                  prompt: int = 64, decode: int = 8, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Largest absolute logit differences (``full_vs_torch``, ``cached_vs_full``, ``cached_vs_torch``).

    The cached graph is fed the prompt (with empty past) and then ``decode`` tokens one at
    a time; each step's last-token logits are compared with the full graph's.
    """
    total = prompt + decode
    ids = np.random.default_rng(seed).integers(0, model.config.vocab, (batch, total), dtype=np.int64)
    with torch.no_grad():
        feed = _feed(ids)
        reference = model(*(torch.from_numpy(feed[k]) for k in INPUTS)).numpy()
    (logits,) = ort_session(full).run(["logits"], feed)
    session = ort_session(cached)
    past_names, present_names = cache_names(model.config.layers)
    past, worst, worst_torch = empty_past(model.config, batch=batch), 0.0, 0.0
    for start, stop in [(0, prompt)] + [(t, t + 1) for t in range(prompt, total)]:
        outputs = session.run(["logits", *present_names],
                              {**_feed(ids[:, start:stop], past=start), **dict(zip(past_names, past))})
        past = outputs[1:]
        worst = max(worst, float(np.abs(outputs[0][:, -1] - logits[:, stop - 1]).max()))
        worst_torch = max(worst_torch, float(np.abs(outputs[0][:, -1] - reference[:, stop - 1]).max()))
    return {"full_vs_torch": float(np.abs(logits - reference).max()), "cached_vs_full": worst,
            "cached_vs_torch": worst_torch}


def decode_latency(full: str | pathlib.Path, cached: str | pathlib.Path, config: LlamaConfig, *,
                   prompt: int = 128, threads: int = 1, repeats: int = 50) -> dict[str, float]:
    """Median ms to get the next token's logits after ``prompt`` tokens, batch 1.

    ``cached_ms``: one token through the cached graph with a ``prompt``-long past;
    ``full_ms``: the whole ``prompt + 1`` tokens through the full-sequence graph.
    """
    import time

    ids = np.random.default_rng(0).integers(0, config.vocab, (1, prompt + 1), dtype=np.int64)
    full_session, cached_session = ort_session(full, threads=threads), ort_session(cached, threads=threads)
    past_names, present_names = cache_names(config.layers)
    first = cached_session.run(present_names, {**_feed(ids[:, :prompt]), **dict(zip(past_names, empty_past(config)))})
    calls = {"full_ms": (full_session, _feed(ids)),
             "cached_ms": (cached_session, {**_feed(ids[:, prompt:], past=prompt), **dict(zip(past_names, first))})}
    result = {}
    for name, (session, feed) in calls.items():
        for _ in range(5):
            session.run(None, feed)
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            session.run(None, feed)
            times.append((time.perf_counter() - tick) * 1e3)
        result[name] = float(np.median(times))
    return result
