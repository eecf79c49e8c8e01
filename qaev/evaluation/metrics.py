"""Accuracy and fidelity metrics on numpy arrays.

Accuracy-like scores (top-k, agreement, correlations) are in percent points: 0..100 for
accuracies, -100..100 for correlations. Rows of logits that hold NaN count as wrong, so a
numerically broken quantized model never scores well. All sums run in float64.

Language-model scores start from the negative log-likelihood (nats) of each next token
(:func:`next_token_nll`): perplexity is ``exp`` of its mean per token, bits per byte its sum
in bits over the UTF-8 bytes the predicted tokens cover, which does not depend on the
tokenizer (Gao et al., "The Pile", 2020, section 4).
"""
from __future__ import annotations

import numpy as np

from qaev.errors import DataError

__all__ = [
    "top_k",
    "top1_agreement",
    "spearman",
    "pearson",
    "rankdata",
    "kl_divergence",
    "sqnr_db",
    "cosine_rows",
    "next_token_nll",
    "perplexity",
    "bits_per_byte",
]


def _logits_2d(logits, what: str) -> np.ndarray:
    array = np.asarray(logits)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DataError(f"{what}: expected non-empty [N, classes] scores, got shape {array.shape}")
    return array


def _same_shape(a, b, what: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.size == 0:
        raise DataError(f"{what}: shapes {a.shape} and {b.shape} differ or are empty")
    return a, b


def _top1(logits: np.ndarray) -> np.ndarray:
    """argmax per row (first index wins ties); -1 for rows holding NaN."""
    pred = np.argmax(logits, axis=1)
    if np.issubdtype(logits.dtype, np.floating):
        pred[np.isnan(logits).any(axis=1)] = -1
    return pred


def top_k(logits, labels, *, k: int = 1) -> float:
    """Percentage of samples whose label is among the ``k`` highest scores (see
    :func:`top_k_hits`)."""
    return float(np.mean(top_k_hits(logits, labels, k=k)) * 100.0)


def top_k_hits(logits, labels, *, k: int = 1) -> np.ndarray:
    """Per sample: whether its label is among the ``k`` highest scores.

    Ties are broken by class index (the lower index ranks first, as ``argmax`` does), so
    a model whose scores are all equal is not rewarded.

    Args:
        logits: Scores ``[N, classes]`` (logits or probabilities).
        labels: Integer class indices ``[N]``.
        k: How many top classes count, 1..classes.

    Returns:
        Boolean array ``[N]``.
    """
    scores = _logits_2d(logits, "top_k")
    target = np.asarray(labels).reshape(-1)
    if target.shape[0] != scores.shape[0]:
        raise DataError(f"top_k: {scores.shape[0]} score rows but {target.shape[0]} labels")
    if not 1 <= k <= scores.shape[1]:
        raise DataError(f"top_k: k={k} outside 1..{scores.shape[1]}")
    if k == 1:
        hit = _top1(scores) == target
    else:
        order = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")[:, :k]
        hit = (order == target[:, None]).any(axis=1)
        if np.issubdtype(scores.dtype, np.floating):
            hit &= ~np.isnan(scores).any(axis=1)
    return hit


def top1_agreement(q_logits, ref_logits) -> float:
    """Percentage of samples whose top-1 class matches the reference model's."""
    return float(np.mean(agreement_hits(q_logits, ref_logits)) * 100.0)


def agreement_hits(q_logits, ref_logits) -> np.ndarray:
    """Per sample: whether its top-1 class matches the reference model's. Scores with more
    axes (``[N, ..., classes]``: a sequence, a grid of positions) agree per position, and
    a sample scores the share of its positions that agree (0..1)."""
    q, ref = np.asarray(q_logits), np.asarray(ref_logits)
    if q.shape != ref.shape:
        raise DataError(f"top1_agreement: shapes {q.shape} and {ref.shape} differ")
    if q.ndim > 2 and q.size:
        q, ref = (a.reshape(-1, a.shape[-1]) for a in (q, ref))
        return (_top1(q) == _top1(ref)).reshape(len(q_logits), -1).mean(axis=1)
    q = _logits_2d(q, "top1_agreement")
    ref = _logits_2d(ref, "top1_agreement")
    return _top1(q) == _top1(ref)


def rankdata(values) -> np.ndarray:
    """1-based ranks of a 1-D array, ties receiving their average rank (float64)."""
    x = np.asarray(values).reshape(-1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse.reshape(-1)]


def pearson(a, b) -> float:
    """Pearson correlation x100 of two equal-length 1-D samples.

    Returns NaN when either input holds a non-finite value, and 0.0 when either input is
    constant (it carries no ranking information).
    """
    x, y = _same_shape(np.asarray(a, np.float64).reshape(-1),
                       np.asarray(b, np.float64).reshape(-1), "pearson")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    if x.min() == x.max() or y.min() == y.max():
        return 0.0
    x = x - x.mean()
    y = y - y.mean()
    denom = np.sqrt(np.dot(x, x)) * np.sqrt(np.dot(y, y))
    return float(np.clip(np.dot(x, y) / denom, -1.0, 1.0) * 100.0)


def spearman(a, b) -> float:
    """Spearman rank correlation x100 (Pearson of average ranks; ties allowed).

    Returns NaN when either input holds a non-finite value, and 0.0 when either input is
    constant.
    """
    x, y = _same_shape(np.asarray(a, np.float64).reshape(-1),
                       np.asarray(b, np.float64).reshape(-1), "spearman")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    return pearson(rankdata(x), rankdata(y))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def kl_divergence(q_logits, ref_logits) -> float:
    """Mean over samples of KL(softmax(ref) || softmax(q)), in nats.

    Args:
        q_logits: Quantized model logits ``[N, classes]``.
        ref_logits: Reference (float) model logits ``[N, classes]``.

    Returns:
        The mean divergence; 0.0 for identical logits, ``inf`` or NaN when ``q`` is broken.
    """
    q = _logits_2d(q_logits, "kl_divergence")
    ref = _logits_2d(ref_logits, "kl_divergence")
    if q.shape != ref.shape:
        raise DataError(f"kl_divergence: shapes {q.shape} and {ref.shape} differ")
    log_p, log_q = _log_softmax(ref), _log_softmax(q)
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0.0, p * (log_p - log_q), 0.0)
    return float(np.mean(np.maximum(terms.sum(axis=1), 0.0)))


def sqnr_db(q_out, ref_out) -> float:
    """Signal-to-quantization-noise ratio in dB over all elements.

    ``10 * log10(sum(ref**2) / sum((ref - q)**2))``: ``inf`` when the outputs are equal,
    ``-inf`` when the reference is all zeros and the output is not, NaN when ``q`` holds
    NaN.
    """
    q, ref = _same_shape(q_out, ref_out, "sqnr_db")
    ref64 = ref.astype(np.float64).reshape(-1)
    noise = ref64 - q.astype(np.float64).reshape(-1)
    signal_power, noise_power = np.dot(ref64, ref64), np.dot(noise, noise)
    if np.isnan(noise_power):
        return float("nan")
    if noise_power == 0.0:
        return float("inf")
    if signal_power == 0.0:
        return float("-inf")
    return float(10.0 * np.log10(signal_power / noise_power))


def cosine_rows(a, b) -> np.ndarray:
    """Cosine similarity of matching rows of two ``[N, ...]`` arrays (flattened per row).

    Two all-zero rows have similarity 1.0; one all-zero row against a non-zero one, or a
    row holding NaN, has 0.0.

    Returns:
        float64 array ``[N]``.
    """
    x, y = _same_shape(a, b, "cosine_rows")
    if x.ndim == 0:
        raise DataError("cosine_rows: expected arrays [N, ...], got scalars")
    x = x.astype(np.float64).reshape(x.shape[0], -1)
    y = y.astype(np.float64).reshape(y.shape[0], -1)
    dot = np.einsum("ij,ij->i", x, y)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    denom = nx * ny
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0.0, dot / np.where(denom > 0.0, denom, 1.0), 0.0)
    cos[(nx == 0.0) & (ny == 0.0)] = 1.0
    return np.clip(cos, -1.0, 1.0)


def next_token_nll(logits, input_ids) -> np.ndarray:
    """Negative log-likelihood (nats) of each next token of a causal language model.

    Args:
        logits: ``[batch, length, vocab]`` scores; position ``t`` predicts token ``t + 1``.
        input_ids: ``[batch, length]`` the tokens fed.

    Returns:
        float32 ``[batch, length - 1]``: ``-log softmax(logits[:, t])[input_ids[:, t + 1]]``,
        computed in float64 one row at a time (the logits of a batch are large); NaN where a
        row of logits holds NaN.

    Raises:
        DataError: shapes that do not match, or a sequence shorter than two tokens.
    """
    scores, ids = np.asarray(logits), np.asarray(input_ids)
    if scores.ndim != 3 or ids.shape != scores.shape[:2] or ids.shape[1] < 2:
        raise DataError(f"next_token_nll: expected logits [B, T, vocab] and ids [B, T] with T >= 2, "
                        f"got {scores.shape} and {ids.shape}")
    out = np.empty((ids.shape[0], ids.shape[1] - 1), np.float32)
    for row in range(ids.shape[0]):
        x = scores[row, :-1].astype(np.float64)
        top = x.max(axis=1)
        log_norm = top + np.log(np.exp(x - top[:, None]).sum(axis=1))
        out[row] = log_norm - x[np.arange(len(x)), ids[row, 1:]]
    return out


def perplexity(nll) -> float:
    """Perplexity per token: ``exp(mean(nll))`` of per-token negative log-likelihoods (nats).

    Raises:
        DataError: no tokens.
    """
    values = np.asarray(nll, np.float64)
    if values.size == 0:
        raise DataError("perplexity: no tokens")
    return float(np.exp(values.mean()))


def bits_per_byte(nll, token_bytes) -> float:
    """Summed negative log2-likelihood over the UTF-8 bytes the predicted tokens cover.

    Args:
        nll: per-token negative log-likelihoods in nats.
        token_bytes: the UTF-8 bytes each predicted token stands for (same shape).

    Raises:
        DataError: shapes differ, or the tokens cover no byte.
    """
    values, sizes = _same_shape(np.asarray(nll, np.float64), np.asarray(token_bytes, np.float64), "bits_per_byte")
    total = float(sizes.sum())
    if total <= 0:
        raise DataError("bits_per_byte: the tokens cover no byte")
    return float(values.sum() / np.log(2.0) / total)
