"""Sentence-pair data (STS Benchmark) for sentence encoders, and its Spearman metric.

A :class:`SentencePairDataset` holds each pair's two token sequences and a gold score.
Its batches interleave the pairs' sentences, ``[s1_0, s2_0, s1_1, s2_1, ...]``, padded
to the longest sentence of that batch only (dynamic padding), so the encoder's
``[2 * pairs, dim]`` output rows come back in the same order and :func:`sts_spearman`
scores them: the Spearman correlation x100 between each pair's cosine similarity and
its gold score (Agirre et al., "SemEval-2017 Task 1", 2017).
"""
from __future__ import annotations

import csv
import os
import pathlib
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from qaev.evaluation import metrics
from qaev.data.indexing import Indexed, readonly
from qaev.errors import ConfigError, DataError

__all__ = ["STSB_SPLITS", "SentencePairDataset", "load_stsb", "tokenize", "sts_spearman"]

#: Splits shipped in the ``stsb`` data folder, as ``sts-<split>.tsv``.
STSB_SPLITS = ("test", "dev")
_HEADER = ["score", "sentence1", "sentence2"]


@dataclass(frozen=True)
class SentencePairDataset(Indexed):
    """Tokenised sentence pairs with gold similarity scores.

    ``len()``, ``subset``, ``head`` and ``split`` count pairs; ``batch_size`` in
    :meth:`batches` counts pairs too, so a batch holds up to ``2 * batch_size`` rows.

    Args:
        sentences: Token ids, one 1-D int array per sentence, ordered
            ``[s1_0, s2_0, s1_1, s2_1, ...]`` (two per pair).
        labels: Gold scores ``[pairs]``.
        pad_id: Token id that fills the padded positions.
        name: Human-readable name, used in reports and error messages.

    Raises:
        DataError: No pairs, an odd number of sentences, a count that does not match the
            labels, or an empty or non-integer sentence.
    """

    _unit = "pairs"

    sentences: Sequence[np.ndarray]
    labels: np.ndarray
    pad_id: int = 0
    name: str = "sentence-pairs"

    def __post_init__(self) -> None:
        labels = np.asarray(self.labels, dtype=np.float64).reshape(-1)
        if labels.size == 0:
            raise DataError(f"{self.name}: dataset has no pairs")
        if len(self.sentences) != 2 * labels.size:
            raise DataError(f"{self.name}: {len(self.sentences)} sentences for {labels.size} "
                            "pairs; expected two per pair")
        sentences = []
        for i, ids in enumerate(self.sentences):
            array = np.asarray(ids)
            if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
                raise DataError(f"{self.name}: sentence {i} is not a non-empty 1-D integer array")
            sentences.append(readonly(array.astype(np.int64, copy=False)))
        object.__setattr__(self, "sentences", tuple(sentences))
        object.__setattr__(self, "labels", readonly(labels))
        object.__setattr__(self, "pad_id", int(self.pad_id))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_names(self) -> tuple[str, ...]:
        """The model inputs each batch feeds."""
        return ("input_ids", "attention_mask")

    def batches(self, *, batch_size: int = 64) -> Iterator[dict[str, np.ndarray]]:
        """Yields feed dicts of consecutive pairs, in order; the last may be smaller.

        Args:
            batch_size: Pairs per batch (``2 * batch_size`` sentences), at least 1.

        Yields:
            ``{"input_ids": int64 [b, L], "attention_mask": int64 [b, L]}`` with ``b``
            sentences in pair order and ``L`` the longest of them; padded positions hold
            ``pad_id`` and mask 0.
        """
        if batch_size < 1:
            raise DataError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        for start in range(0, len(self.sentences), 2 * batch_size):
            chunk = self.sentences[start:start + 2 * batch_size]
            length = max(len(ids) for ids in chunk)
            input_ids = np.full((len(chunk), length), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(chunk), length), dtype=np.int64)
            for row, ids in enumerate(chunk):
                input_ids[row, :len(ids)] = ids
                mask[row, :len(ids)] = 1
            yield {"input_ids": input_ids, "attention_mask": mask}

    def subset(self, indices) -> SentencePairDataset:
        """Returns the pairs at ``indices`` (integer positions, in the order given).

        Raises:
            DataError: Non-integer, out-of-range or no indices.
        """
        idx = self._positions(indices)
        sentences = [self.sentences[2 * i + side] for i in idx.tolist() for side in (0, 1)]
        return SentencePairDataset(sentences, self.labels[idx], pad_id=self.pad_id, name=self.name)


def _read_tsv(path: pathlib.Path) -> tuple[list[float], list[str]]:
    """Reads ``score<TAB>sentence1<TAB>sentence2`` rows; returns scores and sentences."""
    scores: list[float] = []
    sentences: list[str] = []
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if header != _HEADER:
                raise DataError(f"{path}: header must be {chr(9).join(_HEADER)!r}, got {header}")
            for row in reader:
                if not row:
                    continue
                if len(row) != 3:
                    raise DataError(f"{path}:{reader.line_num}: expected 3 tab-separated fields, "
                                    f"got {len(row)}")
                try:
                    scores.append(float(row[0]))
                except ValueError:
                    raise DataError(f"{path}:{reader.line_num}: bad score {row[0]!r}") from None
                sentences.extend((row[1], row[2]))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read sentence pairs ({exc})") from None
    if not scores:
        raise DataError(f"{path}: no sentence pairs listed")
    return scores, sentences


def tokenize(texts: Sequence[str], *, tokenizer_path: str | os.PathLike,
             max_length: int = 256) -> tuple[list[np.ndarray], int]:
    """Tokenises ``texts`` with a Hugging Face ``tokenizer.json``, truncated, unpadded.

    Args:
        texts: The sentences.
        tokenizer_path: The ``tokenizer.json`` file (read with the ``tokenizers`` package).
        max_length: Truncation length in tokens, special tokens included.

    Returns:
        One int64 id array per text, and the tokenizer's padding id.

    Raises:
        DataError: ``tokenizers`` is missing or the file cannot be read.
        ConfigError: ``max_length`` < 2.
    """
    if max_length < 2:
        raise ConfigError(f"max_length must be >= 2, got {max_length}")
    path = pathlib.Path(tokenizer_path)
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise DataError(f"{path}: reading it needs the 'tokenizers' package "
                        "(pip install tokenizers)") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise DataError(f"{path}: cannot load the tokenizer ({exc})") from None
    padding = tokenizer.padding
    pad_id = padding["pad_id"] if padding else tokenizer.token_to_id("[PAD]")
    if pad_id is None:
        raise DataError(f"{path}: tokenizer defines no padding id and no [PAD] token")
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    encodings = tokenizer.encode_batch(list(texts))
    return [np.asarray(e.ids, dtype=np.int64) for e in encodings], int(pad_id)


def load_stsb(path: str | os.PathLike, *, split: str = "test",
              tokenizer_path: str | os.PathLike, max_length: int = 256) -> SentencePairDataset:
    """Loads and tokenises an STS Benchmark split.

    Args:
        path: The ``stsb`` folder (``sts-<split>.tsv`` is read), or a ``.tsv`` file with
            the header ``score<TAB>sentence1<TAB>sentence2`` (``split`` then ignored).
        split: ``"test"`` or ``"dev"``.
        tokenizer_path: The model's ``tokenizer.json``.
        max_length: Truncation length in tokens.

    Returns:
        The pairs with float64 gold scores, named ``stsb-<split>`` (or the file's stem).

    Raises:
        ConfigError: Unknown split.
        DataError: The file is missing or malformed, or the tokenizer cannot be loaded.
    """
    source = pathlib.Path(path).expanduser()
    if source.is_dir():
        if split not in STSB_SPLITS:
            raise ConfigError(f"unknown STS-B split {split!r}; expected one of {STSB_SPLITS}")
        source, name = source / f"sts-{split}.tsv", f"stsb-{split}"
    else:
        name = source.stem
    if not source.is_file():
        raise DataError(f"{source}: sentence-pair file not found")
    scores, texts = _read_tsv(source)
    ids, pad_id = tokenize(texts, tokenizer_path=tokenizer_path, max_length=max_length)
    return SentencePairDataset(ids, np.asarray(scores), pad_id=pad_id, name=name)


def sts_spearman(outputs, labels, float_outputs=None) -> float:
    """Spearman x100 between each pair's embedding cosine and its gold score.

    Args:
        outputs: Embeddings ``[2 * pairs, dim]`` in the order ``[s1_0, s2_0, s1_1, ...]``
            (what a :class:`SentencePairDataset` feeds).
        labels: Gold scores ``[pairs]``.
        float_outputs: Unused (the signature of :class:`qaev.evaluation.evaluator.Metric`).

    Returns:
        The correlation in -100..100 (a pair whose embedding holds NaN gets cosine 0,
        as :func:`qaev.evaluation.metrics.cosine_rows` defines).

    Raises:
        DataError: The number of rows is not twice the number of labels.
    """
    emb = np.asarray(outputs)
    gold = np.asarray(labels).reshape(-1)
    if emb.ndim < 2 or emb.shape[0] != 2 * gold.size:
        raise DataError(f"sts_spearman: {emb.shape[0] if emb.ndim else 0} embedding rows for "
                        f"{gold.size} pairs; expected two rows per pair")
    return metrics.spearman(metrics.cosine_rows(emb[0::2], emb[1::2]), gold)
