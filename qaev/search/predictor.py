"""A cheap model of the accuracy drop, refitted on the measured candidates.

The drop is modelled in a compressed scale, ``asinh(drop)`` (linear near 0, logarithmic for
large drops, where the quantization noise of several layers compounds), as additive terms
plus a learned correction:

- additive: a linear function of one-hot features, one block per searchable layer and gene
  with a choice (weight bits, activations, granularity, ...) plus the global genes, and of
  one prior feature, the log of the summed per-layer harm at each layer's weight width
  (from the problem's measured ``sensitivity`` when it has one, else the square of the
  free relative weight error: a noise power). Its weights are Bayesian ridge regression's
  (:func:`qaev.search.regression.bayesian_ridge`);
- correction: a Gaussian process on the Hamming distance between configs fitted to what
  the additive part leaves (:class:`qaev.search.regression.HammingGP`): the interactions
  between layers, near the configs measured so far.

Every prediction comes with a posterior predictive spread (the additive weights'
uncertainty plus the process's). A :class:`DropModel` is fitted once, on the records it is
given, and never changes: predictions made before a record was measured cannot depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.search.genome import GLOBAL_GENES, LAYER_GENES
from qaev.search.regression import HammingGP, bayesian_ridge, fit_hamming_gp

__all__ = ["Features", "Prediction", "DropModel", "fit_drop_model", "training_records", "spearman", "MIN_RECORDS",
           "MAX_CORRECTION"]

#: Records a model needs before it is fitted.
MIN_RECORDS = 8
#: The correction learns from at most this many records, the latest (its cost grows as
#: the cube of their number; the additive part learns from every record).
MAX_CORRECTION = 400
#: The effective setting of a layer a config leaves float.
_FLOAT = LayerConfig(w_bits=None, act=ActMode.FLOAT).effective()


def _layer_value(cfg: LayerConfig, attr: str):
    return (cfg.act, cfg.a_bits) if attr == "act" else getattr(cfg, attr)


@dataclass(frozen=True)
class Features:
    """How a config becomes a feature row.

    Args:
        space: the :class:`~qaev.search.space.SearchSpace` the configs come from.
        prior: ``[searchable layer, w_bits index]`` -> harm (larger = worse), or None.
    """

    space: object
    prior: np.ndarray | None = None
    columns: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        columns = []
        for i in range(len(self.space.searchable)):
            for gene in LAYER_GENES:
                values = self.space.options(gene.name)
                if len(values) > 1:
                    columns.extend((i, gene.name, v) for v in values)
        for gene in GLOBAL_GENES:
            values = self.space.options(gene.name)
            if len(values) > 1:
                columns.extend((-1, gene.name, v) for v in values)
        object.__setattr__(self, "columns", tuple(columns))

    @property
    def width(self) -> int:
        """Columns of a row (the one-hots, then the prior when there is one)."""
        return len(self.columns) + (self.prior is not None)

    def row(self, config: QuantConfig) -> np.ndarray:
        """The feature row of ``config`` (an effective config of the space)."""
        layers = [config.layer(layer.name) for layer in self.space.searchable]
        layers = [_FLOAT if cfg is None else cfg.effective() for cfg in layers]
        out = np.zeros(self.width)
        for k, (i, attr, value) in enumerate(self.columns):
            seen = getattr(config, attr) if i < 0 else _layer_value(layers[i], attr)
            out[k] = float(seen == value)
        if self.prior is not None:
            out[-1] = self._prior_term(layers)
        return out

    def _prior_term(self, layers) -> float:
        widths = list(self.space.w_bits)
        harm = 0.0
        for i, cfg in enumerate(layers):
            if cfg.w_bits in widths:
                harm += float(self.prior[i, widths.index(cfg.w_bits)])
        floor = max(float(np.max(self.prior)), 1e-12) * 1e-4
        return float(np.log(max(harm, 0.0) + floor))

    @classmethod
    def of(cls, problem) -> "Features":
        """The features of ``problem``: its measured sensitivity as the prior, else the
        square of the relative weight error (:func:`qaev.sensitivity.proxy.weight_error_table`)."""
        from qaev.sensitivity.proxy import weight_error_table

        measured = getattr(problem, "sensitivity", None)
        prior = np.asarray(measured, float) if measured is not None else weight_error_table(problem) ** 2
        return cls(problem.space, np.clip(prior, 0.0, None))


@dataclass(frozen=True)
class Prediction:
    """Predicted drops of some configs, in the model's ``asinh`` scale: ``center`` and the
    posterior predictive standard deviation ``spread``."""

    center: np.ndarray
    spread: np.ndarray

    @property
    def drop(self) -> np.ndarray:
        """The predicted drops (metric points)."""
        return np.sinh(self.center)

    def optimistic(self, kappa: float) -> np.ndarray:
        """Drops ``kappa`` spreads below the prediction (a lower confidence bound)."""
        return np.sinh(self.center - kappa * self.spread)


@dataclass(frozen=True)
class DropModel:
    """A fitted model: the additive part (posterior mean ``weights`` and ``covariance`` over
    centred features, the centring offsets), the ``correction`` fitted to its residuals, and
    the keys of the records it was fitted on."""

    features: Features
    keys: frozenset
    weights: np.ndarray
    covariance: np.ndarray
    x_mean: np.ndarray
    y_mean: float
    correction: HammingGP

    def predict(self, configs: Sequence[QuantConfig]) -> Prediction:
        """Predictions for ``configs`` (each an effective config of the model's space)."""
        rows = np.array([self.features.row(c) for c in configs]).reshape(-1, self.features.width)
        X = rows - self.x_mean
        offset, variance = self.correction.predict(rows[:, :len(self.features.columns)])
        variance = variance + np.einsum("ij,jk,ik->i", X, self.covariance, X)
        return Prediction(center=self.y_mean + X @ self.weights + offset, spread=np.sqrt(np.maximum(variance, 0.0)))


def training_records(problem, keys: Iterable[str] | None = None) -> list:
    """The records of ``keys`` (in their order; default: the whole store) a model may learn
    from, as the search saw them (:meth:`~qaev.search.problem.QuantizationProblem.as_searched`):
    successful, with a drop, measured fully or screened (a race stopped on a subset holds a
    bound, not a value)."""
    chosen = problem.store.records() if keys is None else (problem.store.peek(k) for k in keys)
    out = []
    for record in chosen:
        if record is None or not record.ok or record.objectives.get("acc_drop") is None:
            continue
        if record.final or record.screen is not None:
            out.append(problem.as_searched(record))
    return out


def fit_drop_model(features: Features, records: Iterable, *, memo: dict | None = None) -> DropModel | None:
    """Fit on ``records`` (see :func:`training_records`; the correction on the last
    :data:`MAX_CORRECTION` of them); None with fewer than :data:`MIN_RECORDS`. ``memo`` maps
    a record's key to its feature row (filled as rows are made; a row depends only on the
    config, so a memo changes no number)."""
    records = list(records)
    if len(records) < MIN_RECORDS:
        return None
    memo = {} if memo is None else memo
    for record in records:
        if record.key not in memo:
            memo[record.key] = features.row(QuantConfig.from_dict(record.config))
    rows = np.array([memo[r.key] for r in records])
    y = np.arcsinh(np.array([float(r.objectives["acc_drop"]) for r in records]))
    x_mean, y_mean = rows.mean(axis=0), float(y.mean())
    weights, covariance, _ = bayesian_ridge(rows - x_mean, y - y_mean)
    residual = (y - y_mean - (rows - x_mean) @ weights)[-MAX_CORRECTION:]
    correction = fit_hamming_gp(rows[-MAX_CORRECTION:, :len(features.columns)], residual)
    return DropModel(features=features, keys=frozenset(r.key for r in records), weights=weights,
                     covariance=covariance, x_mean=x_mean, y_mean=y_mean, correction=correction)


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation of ``a`` and ``b`` (ties at their mean rank); None with
    fewer than 3 pairs or a constant side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    if np.std(ra) == 0 or np.std(rb) == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])
