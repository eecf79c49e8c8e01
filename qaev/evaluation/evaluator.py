"""Measuring a model on data: ORT session, batched inference, a metric, and the drop
relative to the float model on the same data."""
from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Mapping

import numpy as np
import onnx
import onnxruntime as ort

from qaev.evaluation import metrics
from qaev.errors import DataError
from qaev.model.graph import FloatModel
from qaev.options import OutputLoss
from qaev.evaluation.outputs import block_scales, collect, combine, output_layout
from qaev.evaluation.reference import check_reference
from qaev.model.session import make_session, run_batches

__all__ = ["Metric", "METRICS", "Evaluator", "Measurement", "get_metric", "SQNR_CAP_DB"]

#: SQNR is reported up to this value: identical outputs (the float model itself) score it
#: instead of infinity, so drops stay finite. float32 rounding alone sits near 140 dB.
SQNR_CAP_DB = 100.0


@dataclass(frozen=True)
class Metric:
    """A scalar score of model outputs.

    Attributes:
        name: registry key.
        higher_is_better: direction of the score.
        needs_labels: False for label-free fidelity metrics (scored against the float model).
        compute: ``(outputs, labels, float_outputs) -> value``.
        per_item: for a metric that is the mean of per-item scores, ``(outputs, labels,
            float_outputs) -> scores [N]`` (same units); lets a bootstrap resample cheaply.
        reduce: ``(batch outputs, batch feed) -> rows``, applied to every batch's first output
            as it comes, so the evaluator keeps these rows (one per item) instead of the raw
            outputs: a language model's logits ``[B, T, vocab]`` become per-token
            negative log-likelihoods ``[B, T - 1]``. None keeps the outputs.
        relative: the drop is in percent of the float model's value (a perplexity 3 % above
            float's is a drop of 3.0) rather than in the metric's own points.
        ranks_classes: the score depends on which of the output's classes wins (block
            reconstruction then fits the last block on the softmax's divergence,
            :class:`~qaev.config.OutputLoss`).
    """

    name: str
    higher_is_better: bool
    needs_labels: bool
    compute: Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], float]
    per_item: Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], np.ndarray] | None = None
    reduce: Callable[[np.ndarray, Mapping[str, np.ndarray]], np.ndarray] | None = None
    relative: bool = False
    ranks_classes: bool = False

    @property
    def output_loss(self) -> OutputLoss:
        """What block reconstruction fits the last block on under this metric."""
        return OutputLoss.KL if self.ranks_classes else OutputLoss.MSE

    def __post_init__(self) -> None:
        if self.relative and self.per_item is not None:
            raise ValueError(f"metric {self.name!r}: a relative drop is not a mean of per-item differences")

    def drop(self, reference: float, value: float) -> float:
        """Points (or, for a relative metric, percent of ``reference``) that ``value`` loses
        against ``reference``; positive is worse."""
        diff = reference - value if self.higher_is_better else value - reference
        return 100.0 * diff / abs(reference) if self.relative else diff


def _next_token_nll(logits: np.ndarray, feed: Mapping[str, np.ndarray]) -> np.ndarray:
    return metrics.next_token_nll(logits, feed["input_ids"])


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("top1", True, True, lambda out, y, ref: metrics.top_k(out, y, k=1),
               lambda out, y, ref: 100.0 * metrics.top_k_hits(out, y, k=1), ranks_classes=True),
        Metric("top5", True, True, lambda out, y, ref: metrics.top_k(out, y, k=5),
               lambda out, y, ref: 100.0 * metrics.top_k_hits(out, y, k=5), ranks_classes=True),
        Metric("agreement", True, False, lambda out, y, ref: metrics.top1_agreement(out, ref),
               lambda out, y, ref: 100.0 * metrics.agreement_hits(out, ref), ranks_classes=True),
        Metric("kl", False, False, lambda out, y, ref: metrics.kl_divergence(out, ref), ranks_classes=True),
        Metric("sqnr_db", True, False, lambda out, y, ref: min(metrics.sqnr_db(out, ref), SQNR_CAP_DB)),
        Metric("spearman", True, True, lambda out, y, ref: _sts_spearman(out, y, ref)),
        # labels: the UTF-8 bytes each predicted token covers (qaev.data.text.TextWindows)
        Metric("perplexity", False, True, lambda out, y, ref: metrics.perplexity(out), reduce=_next_token_nll,
               relative=True),
        Metric("bits_per_byte", False, True, lambda out, y, ref: metrics.bits_per_byte(out, y),
               reduce=_next_token_nll, relative=True),
    )
}


def _sts_spearman(out, labels, ref) -> float:
    from qaev.data.stsb import sts_spearman

    return sts_spearman(out, labels, ref)


def get_metric(name: str) -> Metric:
    """The registered metric ``name``."""
    try:
        return METRICS[name]
    except KeyError:
        raise DataError(f"metric {name!r} is not one of {', '.join(METRICS)}") from None


@dataclass(frozen=True)
class Measurement:
    """One measured value with its sample count and where the time went (seconds)."""

    value: float
    n: int
    session_s: float
    inference_s: float
    outputs: np.ndarray | None = None


class Evaluator:
    """Scores models on one dataset with one metric.

    Args:
        model: the float model (the reference for drops and fidelity metrics).
        data: an :class:`~qaev.data.ArrayDataset` (labels needed for labelled metrics).
        metric: a key of :data:`METRICS`.
        batch_size: inference batch size.
        threads: ORT intra-op threads.
        ort_level: ORT optimisation level of every session it opens (one per run:
            :data:`qaev.model.session.ORT_LEVELS`).
    """

    def __init__(self, model: FloatModel, data, *, metric: str = "top1", batch_size: int = 64,
                 threads: int = 1, ort_level: str = "extended") -> None:
        self.model = model
        self.data = data
        self.metric = get_metric(metric)
        feeds = bool(getattr(data, "feeds", False))
        self.batch_size = 1 if feeds else (model.fixed_batch
                                           or min(batch_size, getattr(data, "max_batch", None) or batch_size))
        self.threads = threads
        self.ort_level = ort_level
        if self.metric.needs_labels and data.labels is None:
            raise DataError(f"metric {metric!r} needs labels, and dataset {data.name!r} has none")
        self.layout = output_layout(model, label_free=not self.metric.needs_labels,
                                    every_output=self.metric.name == "sqnr_db", stacked=feeds)

    def run(self, session: ort.InferenceSession, batches) -> np.ndarray:
        """The outputs the metric reads of ``session`` over ``batches``, items along axis 0
        (:mod:`qaev.evaluation.outputs`), or the rows of a metric that reduces each batch."""
        return self._combined(self._blocks(session, batches))

    def _combined(self, blocks: list[np.ndarray]) -> np.ndarray:
        """The metric's one array from the outputs read (several scaled and joined)."""
        return blocks[0] if len(blocks) == 1 else combine(blocks, self._scales)

    def _blocks(self, session: ort.InferenceSession, batches) -> list[np.ndarray]:
        """One array per output read; a metric that reduces batch by batch (per-token NLL
        instead of a language model's logits) keeps its rows of the first output only."""
        if self.metric.reduce is not None:
            return [run_batches(session, batches, reduce=self.metric.reduce)]
        return collect(session, batches, self.layout, check=self._check_feed)

    def _check_feed(self, feed) -> None:
        """The model's inputs in ``feed`` against the float model's declared ones (a
        simulator's extra inputs aside; an input the model lacks fails the run itself)."""
        self.model.check_feed({k: v for k, v in feed.items() if k in self.model.inputs})

    def outputs(self, model) -> tuple[np.ndarray, float, float]:
        """The metric's output array of ``model`` (a model, its bytes, or a ready ORT
        session) on the data, session seconds, inference seconds."""
        blocks, session_s, inference_s = self._timed_blocks(model)
        return self._combined(blocks), session_s, inference_s

    def _timed_blocks(self, model) -> tuple[list[np.ndarray], float, float]:
        """:meth:`_blocks` of ``model`` over the data, session seconds, inference seconds."""
        start = time.perf_counter()
        session = (model if isinstance(model, ort.InferenceSession)
                   else make_session(model, threads=self.threads, level=self.ort_level))
        built = time.perf_counter()
        blocks = self._blocks(session, self.data.batches(batch_size=self.batch_size))
        return blocks, built - start, time.perf_counter() - built

    @cached_property
    def _reference_run(self) -> tuple[list[np.ndarray], float, float]:
        """The float model's run over the data, timed (:meth:`_timed_blocks`)."""
        return self._timed_blocks(self.model.proto)

    @cached_property
    def _reference_blocks(self) -> list[np.ndarray]:
        return self._reference_run[0]

    @cached_property
    def _scales(self) -> tuple[float, ...]:
        return block_scales(self._reference_blocks)

    @cached_property
    def reference(self) -> np.ndarray:
        """Float-model outputs on the data (checked: see :func:`check_reference`)."""
        out = self._combined(self._reference_blocks)
        check_reference(self.metric.name, out, self.data)
        return out

    @cached_property
    def float_value(self) -> float:
        """The metric of the float model."""
        return float(self.metric.compute(self.reference, self.data.labels, self.reference))

    @property
    def float_measurement(self) -> Measurement:
        """The float model's measurement from the run that gave :attr:`reference` (made now
        if none was): its value and where its time went, without running the model again."""
        value = self.float_value
        _, session_s, inference_s = self._reference_run
        return Measurement(value=value, n=len(self.data), session_s=session_s, inference_s=inference_s)

    def measure(self, model: onnx.ModelProto | bytes, *, keep_outputs: bool = False) -> Measurement:
        """Run ``model`` over the data and score it."""
        out, session_s, inference_s = self.outputs(model)
        value = self.score(out)
        return Measurement(value=value, n=len(self.data), session_s=session_s, inference_s=inference_s,
                           outputs=out if keep_outputs else None)

    def companions(self, outputs: np.ndarray) -> dict[str, float]:
        """Every other registered metric that scores the same rows as this one (the same
        reduction: bits per byte beside perplexity), on ``outputs``."""
        reduce = self.metric.reduce
        if reduce is None:
            return {}
        return {m.name: float(m.compute(outputs, self.data.labels, None)) for m in METRICS.values()
                if m.reduce is reduce and m.name != self.metric.name}

    def score(self, outputs: np.ndarray) -> float:
        """The metric of ``outputs`` (rows of the whole set, in order)."""
        if self.metric.needs_labels and not self.__dict__.get("_labels_checked"):
            check_reference(self.metric.name, outputs, self.data)  # labels that fit the model's classes
            self.__dict__["_labels_checked"] = True
        ref = None if self.metric.needs_labels else self.reference
        return float(self.metric.compute(outputs, self.data.labels, ref))

    def head_drop(self, outputs: np.ndarray, *, n_boot: int = 50, seed: int = 0,
                  items: np.ndarray | None = None) -> tuple[float, float]:
        """Drop and its standard error on the first items of the set, those ``outputs``
        cover, paired with the float model's outputs on the same items. For a mean of
        per-item scores (``items``: their :meth:`item_drops`, when already at hand) that is
        the standard error of the mean of the paired differences, the value the bootstrap
        converges to; otherwise a paired bootstrap of ``n_boot`` resamples (Efron &
        Tibshirani, "An Introduction to the Bootstrap", 1993)."""
        diff = self.item_drops(outputs) if items is None else items
        if diff is not None:
            return float(diff.mean()), float(np.std(diff) / np.sqrt(len(diff)))
        return self.paired_gap(self.reference[:len(outputs)], outputs, n_boot=n_boot, seed=seed)

    def paired_gap(self, a: np.ndarray, b: np.ndarray, *, n_boot: int = 50, seed: int = 0) -> tuple[float, float]:
        """How many more points ``b`` loses than ``a`` on the first items both cover, and
        its bootstrap standard error (the same resampled items for both)."""
        per_item, n, labels, ref = self._head(min(len(a), len(b)))

        metric = self.metric

        def gap_on(items: np.ndarray) -> float:
            rows = (items[:, None] * per_item + np.arange(per_item)).ravel()
            lab = None if labels is None else labels[items]
            value_a, value_b = metric.compute(a[rows], lab, ref[rows]), metric.compute(b[rows], lab, ref[rows])
            if metric.relative:
                base = metric.compute(ref[rows], lab, ref[rows])
                return float(metric.drop(base, value_b) - metric.drop(base, value_a))
            return float(metric.drop(value_a, value_b))

        rng = np.random.default_rng(seed)
        gaps = [gap_on(rng.integers(0, n, n)) for _ in range(n_boot)]
        return gap_on(np.arange(n)), float(np.std(gaps, ddof=1))

    def item_drops(self, outputs: np.ndarray) -> np.ndarray | None:
        """Per-item points lost against the float model on the first items ``outputs``
        cover (their mean is the drop), or None for a metric that is not a mean of
        per-item scores (a rank correlation)."""
        if self.metric.per_item is None:
            return None
        _, _, labels, ref = self._head(len(outputs))
        sign = 1.0 if self.metric.higher_is_better else -1.0
        return sign * (self.metric.per_item(ref, labels, ref) - self.metric.per_item(outputs, labels, ref))

    def _head(self, n_rows: int) -> tuple[int, int, np.ndarray | None, np.ndarray]:
        """For the first ``n_rows`` output rows: rows per item (two for sentence pairs), the
        items they cover, those items' labels and the float model's rows."""
        per_item = len(self.reference) // len(self.data)
        n = n_rows // per_item
        return per_item, n, None if self.data.labels is None else self.data.labels[:n], self.reference[:n * per_item]

    def drop(self, value: float) -> float:
        """Points lost relative to the float model (positive is worse; in percent of the
        float model's value for a relative metric such as perplexity)."""
        return self.metric.drop(self.float_value, value)
