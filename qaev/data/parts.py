"""What a problem is made of (:class:`Parts`) and how a registered problem says so
(:class:`ProblemSpec`, exported as ``SPEC`` by each module of :mod:`qaev.problems`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

__all__ = ["Parts", "ProblemSpec"]


@dataclass(frozen=True)
class Parts:
    """A float model, its data splits and the metric.

    Attributes:
        model: the :class:`~qaev.model.graph.FloatModel`.
        calib: calibration data.
        eval: the data the search measures on.
        metric: the metric's name.
        test: held-out data the search never sees (None: benchmarks split ``eval``).
        full: the data on which the float reference figure is quoted (``qaev evaluate --problem``).
        validation: data the search does not fit to, on which the shipped point is chosen
            (None: the run sets a share of ``eval`` apart, see
            :attr:`qaev.search.spec.EvalSettings.validation`).
        host_feed: the input ``host_latency_ms`` is measured on (None: the first evaluation
            batch of 8); a decoder's is one decoding step: one token at batch 1 with the
            key/value cache of a prompt.
        host_feed_label: what ``host_feed`` is, in words (shown beside its latencies).
    """

    model: object
    calib: object
    eval: object
    metric: str
    test: object = None
    full: object = None
    validation: object = None
    host_feed: Mapping | None = None
    host_feed_label: str = ""

    @property
    def reference_data(self):
        """Where a float model's figure is quoted: the held-out test split, else the
        problem's full set, else the evaluation split."""
        return self.test or self.full or self.eval

    @property
    def held_out(self):
        """Where a quantized model is measured: never the calibration data (the test split,
        else the evaluation split)."""
        return self.test or self.eval


@dataclass(frozen=True)
class ProblemSpec:
    """A registered problem.

    Attributes:
        name: its registry key.
        description: one line for ``qaev problems``.
        parts: ``(**options) -> Parts``: options ``calib``, ``eval``, ``seed`` and ``data``
            (a data folder) at least; unknown options are ignored.
        model_path: ``() -> path`` of the float model file (built on first use), no data loaded.
    """

    name: str
    description: str
    parts: Callable[..., Parts]
    model_path: Callable[[], object]
