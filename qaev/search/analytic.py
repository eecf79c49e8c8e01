"""A search over a layer list, with a metric computed from the config: no model, no data.

:class:`AnalyticProblem` runs the search machinery exactly as a measured search does (the
space and its genome, qaev's sampling, crossover, mutation, hardware repair and duplicate
elimination, pymoo's NSGA-II/III survival, exact sizes and the hardware tables'
estimates) on layers that need not exist as a model, such as LLaMA-7B's 226
(:func:`qaev.model.shapes.decoder_layers`). The accuracy objective comes from a function
of the config instead of a measurement: :func:`noise_drop` is such a stand-in, an
analytic model of quantization noise (labelled so wherever it is reported). It measures
what the machinery costs at a scale no model here could be evaluated at, and gives
fronts whose configurations the hardware tables can price.
"""
from __future__ import annotations

import time
from typing import Callable, Mapping, Sequence

import numpy as np
from pymoo.core.problem import Problem

from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.model.layers import LayerInfo
from qaev.quantize.sizes import estimate_cost, weight_bytes
from qaev.runtime.store import Record
from qaev.search.front import non_dominated
from qaev.search.space import SearchSpace

__all__ = ["AnalyticProblem", "noise_drop", "ANALYTIC_UNIT"]

#: How the analytic accuracy objective is labelled in reports.
ANALYTIC_UNIT = "analytic drop (noise model, not measured)"

#: Relative weight-noise power of a grid's scale groups (finer groups fit the weights more closely).
_GROUP = {None: 1.0, 128: 0.8, 64: 0.7, 32: 0.6}


def _layer_noise(cfg: LayerConfig | None) -> float:
    """Noise power of a layer's weight grid relative to a 4-bit per-channel nearest grid:
    a quarter per added bit (6.02 dB per bit; Widrow & Kollar, "Quantization Noise", 2008,
    chapter 4), less for finer scale groups and second-order rounding (GPTQ), plus the
    activation rounding of a dynamic int8 layer."""
    if cfg is None or cfg.w_bits is None:
        return 0.0
    eff = cfg.effective()
    noise = 4.0 ** (4 - eff.w_bits) * _GROUP.get(eff.granularity.block_size, 1.0)
    noise *= 0.6 if eff.rounding.value == "gptq" else 1.0
    return noise + (4.0 ** (4 - 8) if eff.act is ActMode.DYNAMIC else 0.0)


def noise_drop(layers: Sequence[LayerInfo], *, weights: Mapping[str, float] | None = None,
               scale: float = 2.0) -> Callable[[QuantConfig], float]:
    """An analytic accuracy drop: each layer's noise (:func:`_layer_noise`) weighted by its
    share of the parameters (times ``weights[name]`` where given), summed, and scaled so
    that every layer at 4-bit per-channel nearest rounding costs ``scale``.

    A stand-in for a measured metric, for exercising searches at scale; it predicts nothing
    about a real model's accuracy.
    """
    total = sum(layer.params for layer in layers) or 1
    share = {layer.name: layer.params / total * (weights or {}).get(layer.name, 1.0) for layer in layers}
    norm = scale / (sum(share.values()) or 1.0)
    memo: dict = {}

    def drop(config: QuantConfig) -> float:
        value = 0.0
        for name, weight in share.items():
            cfg = config.layer(name)
            key = (name, cfg)
            if key not in memo:
                memo[key] = weight * _layer_noise(cfg)
            value += memo[key]
        return norm * value

    return drop


class _LayerList:
    """What sampling reads of a quantizer: the layers."""

    def __init__(self, layers: Sequence[LayerInfo]) -> None:
        self.layers = list(layers)


class AnalyticProblem(Problem):
    """Minimise an analytic drop, exact size and estimated latency over a layer list.

    Args:
        layers: the layers (graph order).
        metric: ``config -> drop`` (:func:`noise_drop`).
        space: what may be chosen (default: the space's defaults on ``layers``).
        objectives: names among ``acc_drop`` (the metric), ``size_mb``, ``est_latency_ms``,
            ``est_energy_mj``.
        table: a :class:`~qaev.hardware.HardwareTable` (needed for estimated objectives;
            repair moves layers to pairs it can run).
        other_bytes: bytes of the weights that are no layer's (norms).

    Attributes:
        records: every evaluated config by key (a :class:`~qaev.runtime.store.Record` each).
        metric_s, cost_s: seconds spent in the metric and in sizes and estimates.
    """

    def __init__(self, layers: Sequence[LayerInfo], *, metric: Callable[[QuantConfig], float],
                 space: SearchSpace | None = None,
                 objectives: Sequence[str] = ("acc_drop", "size_mb", "est_latency_ms"), table=None,
                 other_bytes: int = 0) -> None:
        self.space = space or SearchSpace(layers=layers)
        self.quantizer = _LayerList(layers)
        self.table, self.metric, self.other_bytes = table, metric, int(other_bytes)
        self.objectives = tuple(objectives)
        self.sensitivity = self.layer_sensitivity()
        self.records: dict[str, Record] = {}
        self.metric_s = self.cost_s = 0.0
        self._estimates: dict = {}
        self._sizes: dict = {}
        super().__init__(n_var=self.space.n_var, n_obj=len(self.objectives), xl=0, xu=self.space.upper(),
                         vtype=int)

    def layer_sensitivity(self) -> np.ndarray:
        """``[searchable layer, w_bits index]`` -> the metric with that layer alone at that
        width (weight-only, the space's first options): what seeds the first population."""
        space = self.space
        out = np.zeros((len(space.searchable), len(space.w_bits)))
        for i, layer in enumerate(space.searchable):
            for j, bits in enumerate(space.w_bits):
                cfg = LayerConfig(w_bits=bits, act=ActMode.FLOAT, granularity=space.granularities[0],
                                  rounding=space.roundings[0])
                out[i, j] = self.metric(QuantConfig(layers={layer.name: cfg}))
        return out

    def evaluate_config(self, config: QuantConfig) -> Record:
        """The record of ``config`` (computed once per effective config)."""
        key = config.key()
        if key not in self.records:
            start = time.perf_counter()
            values = {"acc_drop": float(self.metric(config))} if "acc_drop" in self.objectives else {}
            middle = time.perf_counter()
            if "size_mb" in self.objectives:
                values["size_mb"] = self._bytes(config) / 1e6
            if {"est_latency_ms", "est_energy_mj"} & set(self.objectives):
                cost = estimate_cost(self.quantizer.layers, config, self.table, memo=self._estimates)
                values.update(est_latency_ms=cost.est_latency_ms, est_energy_mj=cost.est_energy_mj)
            self.metric_s += middle - start
            self.cost_s += time.perf_counter() - middle
            self.records[key] = Record(key=key, objectives={n: values[n] for n in self.objectives},
                                       metric=values.get("acc_drop"), config=config.to_dict(),
                                       seconds=time.perf_counter() - start)
        return self.records[key]

    def _bytes(self, config: QuantConfig) -> int:
        """:func:`~qaev.quantize.sizes.model_bytes` of ``config``, each layer's bytes computed
        once per setting."""
        total = self.other_bytes
        for layer in self.quantizer.layers:
            cfg = config.layer(layer.name)
            key = (layer.name, cfg)
            if key not in self._sizes:
                self._sizes[key] = weight_bytes(layer, cfg)
            total += self._sizes[key]
        return total

    def _evaluate(self, X, out, *args, **kwargs):
        rows = [self.evaluate_config(self.space.decode(x)) for x in X]
        out["F"] = np.array([[r.objectives[n] for n in self.objectives] for r in rows], float)

    def front(self) -> list[Record]:
        """Non-dominated records among every evaluated config."""
        records = list(self.records.values())
        F = np.array([[r.objectives[n] for n in self.objectives] for r in records], float)
        return [records[i] for i in non_dominated(F.reshape(-1, len(self.objectives)))]

    def float_objectives(self) -> dict[str, float]:
        """The objectives of the float model (nothing quantized)."""
        return dict(self.evaluate_config(QuantConfig()).objectives)

