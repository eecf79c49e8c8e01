"""Text for causal language models: a text file (or a folder of them) tokenised and cut into
fixed windows.

A :class:`TextWindows` holds windows of ``length`` tokens. Each batch feeds what exported
decoders take (``input_ids``, an all-ones ``attention_mask``, ``position_ids`` 0..length-1,
and, for a graph with a key/value cache, empty past tensors), and position ``t`` predicts
token ``t + 1``: a window scores its last ``length - 1`` tokens, the first one being context
only. Windows do not overlap, so a seeded split of them gives disjoint calibration and
evaluation text. The labels are the UTF-8 bytes each predicted token covers, so bits per
byte (:func:`qaev.evaluation.metrics.bits_per_byte`) does not depend on the tokenizer; this
needs a byte-level tokenizer (every token one byte string), which is checked.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Iterator, Mapping

import numpy as np

from qaev.data._cache import cache_dir
from qaev.data.indexing import Indexed, readonly
from qaev.errors import DataError

__all__ = ["TextWindows", "load_text_windows", "read_texts", "token_byte_lengths", "empty_cache_inputs",
           "CACHE_PREFIX"]

#: Inputs whose names start so are a decoder's past key/values (Hugging Face naming).
CACHE_PREFIX = "past_key_values."


@dataclass(frozen=True)
class TextWindows(Indexed):
    """Fixed-length token windows and the bytes of each predicted token.

    Args:
        tokens: int ``[windows, length]`` token ids, ``length`` >= 2.
        token_bytes: int ``[windows, length - 1]``: UTF-8 bytes of tokens ``1..length-1`` of
            each window (the predicted ones); these are the :attr:`labels`.
        empty_inputs: input name -> per-row shape of a zero-size float input fed with every
            batch (a decoder's empty key/value cache: ``(kv_heads, 0, head_dim)``).
        name: shown in reports and messages.

    Raises:
        DataError: no windows, windows shorter than two tokens, or labels of another shape.
    """

    _unit = "windows"
    #: Largest batch worth running: a batch's logits are ``[batch, length, vocab]`` floats.
    max_batch: ClassVar[int] = 8

    tokens: np.ndarray
    token_bytes: np.ndarray
    empty_inputs: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    name: str = "text"

    def __post_init__(self) -> None:
        tokens = np.asarray(self.tokens)
        if tokens.ndim != 2 or tokens.shape[0] == 0 or tokens.shape[1] < 2 \
                or not np.issubdtype(tokens.dtype, np.integer):
            raise DataError(f"{self.name}: expected integer token windows [windows, length >= 2], got "
                            f"{tokens.dtype} {tokens.shape}")
        sizes = np.asarray(self.token_bytes)
        if sizes.shape != (tokens.shape[0], tokens.shape[1] - 1):
            raise DataError(f"{self.name}: token_bytes {sizes.shape} do not match windows {tokens.shape}")
        object.__setattr__(self, "tokens", readonly(tokens.astype(np.int64, copy=False)))
        object.__setattr__(self, "token_bytes", readonly(sizes.astype(np.int64, copy=False)))
        shapes = {str(k): tuple(int(d) for d in v) for k, v in dict(self.empty_inputs).items()}
        object.__setattr__(self, "empty_inputs", MappingProxyType(shapes))

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def length(self) -> int:
        """Tokens per window."""
        return int(self.tokens.shape[1])

    @property
    def labels(self) -> np.ndarray:
        """UTF-8 bytes of each predicted token, ``[windows, length - 1]``."""
        return self.token_bytes

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model inputs each batch feeds."""
        return ("input_ids", "attention_mask", "position_ids", *self.empty_inputs)

    def batches(self, *, batch_size: int = 8) -> Iterator[dict[str, np.ndarray]]:
        """Yields feed dicts of consecutive windows, in order; the last may be smaller.

        Raises:
            DataError: ``batch_size`` < 1.
        """
        if batch_size < 1:
            raise DataError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        positions = np.arange(self.length, dtype=np.int64)
        for start in range(0, len(self), batch_size):
            ids = np.ascontiguousarray(self.tokens[start:start + batch_size])
            n = ids.shape[0]
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                    "position_ids": np.ascontiguousarray(np.broadcast_to(positions, ids.shape))}
            feed.update({name: np.zeros((n, *shape), np.float32) for name, shape in self.empty_inputs.items()})
            yield feed

    def subset(self, indices) -> TextWindows:
        """The windows at ``indices`` (integer positions, in the order given).

        Raises:
            DataError: non-integer, out-of-range or no indices.
        """
        idx = self._positions(indices)
        return TextWindows(self.tokens[idx], self.token_bytes[idx], empty_inputs=self.empty_inputs, name=self.name)


def read_texts(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(name, text)`` of a UTF-8 text file, or of every ``*.txt`` file directly in a
    folder (sorted by name).

    Raises:
        DataError: the path is missing, a folder holds no ``.txt`` file, or a file is not UTF-8.
    """
    source = Path(path).expanduser()
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix == ".txt" and p.is_file())
        if not files:
            raise DataError(f"{source}: no .txt file in this folder")
    elif source.is_file():
        files = [source]
    else:
        raise DataError(f"{source}: no such text file or folder")
    out = []
    for file in files:
        try:
            out.append((file.name, file.read_bytes().decode("utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{file}: cannot read it as UTF-8 text ({exc})") from None
    return out


def _tokenizer(path: str | os.PathLike):
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise DataError(f"{path}: reading it needs the 'tokenizers' package (pip install tokenizers)") from None
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot load the tokenizer ({exc})") from None


def token_byte_lengths(tokenizer) -> np.ndarray:
    """UTF-8 bytes each token of a byte-level BPE stands for (its vocabulary writes one
    symbol per byte, Radford et al., "Language Models are Unsupervised Multitask Learners",
    2019, section 2.2)."""
    lengths = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    for token, index in tokenizer.get_vocab().items():
        lengths[index] = len(token)
    return lengths


def _encode(tokenizer, lengths: np.ndarray, name: str, text: str) -> np.ndarray:
    """Token ids of one text, checked to cover exactly its bytes."""
    tokenizer.no_truncation()
    tokenizer.no_padding()
    ids = np.asarray(tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
    covered, size = int(lengths[ids].sum()), len(text.encode("utf-8"))
    if covered != size:
        raise DataError(f"{name}: the tokens cover {covered} bytes, the text has {size}; bits per byte "
                        "needs a byte-level tokenizer")
    return ids


def _token_stream(texts: list[tuple[str, str]], tokenizer, lengths: np.ndarray, tokenizer_path: Path) -> np.ndarray:
    """The joined token ids of ``texts``, kept under ``$QAEV_CACHE/text`` by the hashes of
    the texts and the tokenizer (tokenising megabytes takes seconds)."""
    digest = hashlib.sha256(tokenizer_path.read_bytes())
    for name, text in texts:
        digest.update(name.encode() + b"\0" + hashlib.sha256(text.encode("utf-8")).digest())
    path = cache_dir("text") / f"{digest.hexdigest()[:24]}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a damaged copy is rebuilt, never trusted
            pass
    ids = np.concatenate([_encode(tokenizer, lengths, n, t) for n, t in texts])
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")
    np.save(partial, ids.astype(np.int32 if len(lengths) < 2**31 else np.int64))
    os.replace(partial, path)
    return ids


def load_text_windows(path: str | os.PathLike, *, tokenizer_path: str | os.PathLike, length: int,
                      empty_inputs: Mapping[str, tuple[int, ...]] | None = None,
                      name: str | None = None) -> TextWindows:
    """Tokenises a text file or a folder of them and cuts the token stream into windows.

    The files are tokenised one by one and their tokens joined in name order; the stream is
    cut into consecutive windows of ``length`` tokens and the incomplete tail dropped. The
    token stream is kept under ``$QAEV_CACHE/text`` for the next load.

    Args:
        path: a UTF-8 text file, or a folder of ``*.txt`` files.
        tokenizer_path: a Hugging Face ``tokenizer.json`` of a byte-level BPE.
        length: tokens per window (the model's context).
        empty_inputs: see :class:`TextWindows`.
        name: the dataset's name (default: the file or folder name).

    Raises:
        DataError: unreadable text or tokenizer, a tokenizer that is not byte-level, or
            fewer than ``length`` tokens.
    """
    if length < 2:
        raise DataError(f"window length must be >= 2 tokens, got {length}")
    tokenizer = _tokenizer(tokenizer_path)
    lengths = token_byte_lengths(tokenizer)
    ids = _token_stream(read_texts(path), tokenizer, lengths, Path(tokenizer_path))
    n = len(ids) // length
    if n == 0:
        raise DataError(f"{path}: {len(ids)} tokens, fewer than one window of {length}")
    tokens = ids[:n * length].reshape(n, length)
    return TextWindows(tokens, lengths[tokens[:, 1:]], empty_inputs=empty_inputs or {},
                       name=name or Path(path).name)


def empty_cache_inputs(inputs: Mapping) -> dict[str, tuple[int, ...]]:
    """Per-row shapes ``(kv_heads, 0, head_dim)`` of a decoder graph's past key/value inputs
    (names starting with :data:`CACHE_PREFIX`, shapes ``[batch, kv_heads, past, head_dim]``).

    Args:
        inputs: the graph's input name -> ``onnx.ValueInfoProto``.

    Raises:
        DataError: a past input whose head count or width is not a fixed number.
    """
    out = {}
    for name, value in inputs.items():
        if not name.startswith(CACHE_PREFIX):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]
        if len(dims) != 4 or not dims[1] or not dims[3]:
            raise DataError(f"input {name!r}: expected [batch, kv_heads, past, head_dim] with fixed heads and width")
        out[name] = (dims[1], 0, dims[3])
    return out
