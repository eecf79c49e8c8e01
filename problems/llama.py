"""The llama-pydocs decoder: a small LLaMA-architecture language model trained here on the
Python documentation, exported once to ONNX with a key/value cache.

The weights, tokenizer and training record ship in ``assets/llama-pydocs/`` (see its
README: 5.0M parameters, 4 blocks, d_model 256, GQA 4/2 heads, SwiGLU, RoPE, RMSNorm,
untied LM head; trained by ``problems/train_llama.py``). :func:`llama_model_path` builds the
decoding graph of :mod:`qaev.problems._llama_export` the first time (torch needed once)
and caches it under ``$QAEV_CACHE/models``: ``input_ids``, ``attention_mask``,
``position_ids`` and ``past_key_values.<i>.key|value`` in, ``logits`` and
``present.<i>.key|value`` out. Fed an empty past it is the full-sequence model (the
export check in ``tests/problems/test_llama_model.py`` holds the two to the same logits),
so one quantized graph is both measured on text windows and timed per decoded token.
"""
from __future__ import annotations

import json
import os
import pathlib

from qaev.errors import ModelError
from qaev.problems._export import cached_export

__all__ = ["LLAMA_ASSETS", "LLAMA_PROMPT", "llama_config", "llama_tokenizer_path", "llama_model_path",
           "load_llama_windows", "llama_decode_feed"]

#: The shipped weights, tokenizer and training record.
LLAMA_ASSETS = pathlib.Path(__file__).resolve().parent / "assets" / "llama-pydocs"
#: Prompt tokens before the decoding step that host latency times.
LLAMA_PROMPT = 128
_CASE = "llama-pydocs-kv"
_FORMAT = 1  # bump when the definition or the export changes


def _asset(name: str) -> pathlib.Path:
    path = LLAMA_ASSETS / name
    if not path.is_file():
        raise ModelError(f"{path}: asset of the llama-pydocs model missing; reinstall qaev")
    return path


def llama_config() -> dict:
    """The shipped ``config.json`` (architecture, data hashes, training results)."""
    return json.loads(_asset("config.json").read_text())


def llama_tokenizer_path() -> pathlib.Path:
    """The byte-level BPE ``tokenizer.json`` the model was trained with."""
    return _asset("tokenizer.json")


def _export(path: pathlib.Path) -> None:
    from qaev.problems._export import import_torch

    import_torch(_CASE)
    import onnx

    from qaev.problems._llama_export import export_cached, load_llama

    export_cached(load_llama(_asset("weights.npz"), _asset("config.json")), path)
    model = onnx.load(str(path))
    model.producer_name = "qaev.problems.llama"
    onnx.save(model, str(path))


def llama_model_path() -> pathlib.Path:
    """The cached decoding graph, exported first if missing.

    Returns:
        ``$QAEV_CACHE/models/llama-pydocs-kv-v<format>-<weights sha>.onnx``.

    Raises:
        ModelError: torch is missing or the export failed.
    """
    return cached_export(_CASE, weights=_asset("weights.npz"), pip_name="qaev", format_version=_FORMAT,
                         export=_export)


def load_llama_windows(path: str | os.PathLike, model, *, name: str | None = None):
    """A text file or folder tokenised with the model's tokenizer, in windows of its context.

    Args:
        path: a UTF-8 ``.txt`` file or a folder of them.
        model: the float :class:`~qaev.model.graph.FloatModel` (its past inputs are fed empty).
        name: the dataset's name.

    Returns:
        A :class:`qaev.data.text.TextWindows`.
    """
    from qaev.data.text import empty_cache_inputs, load_text_windows

    context = int(llama_config()["architecture"]["context"])
    return load_text_windows(path, tokenizer_path=llama_tokenizer_path(), length=context,
                             empty_inputs=empty_cache_inputs(model.inputs), name=name)


def llama_decode_feed(model, windows) -> dict:
    """One decoding step after the first :data:`LLAMA_PROMPT` tokens of the first window
    (batch 1, the float model's cache of the prompt): what ``host_latency_ms`` times."""
    from qaev.evaluation.decode import decode_feed
    from qaev.model.session import make_session

    return decode_feed(make_session(model.proto), windows.tokens[:1, :LLAMA_PROMPT])
