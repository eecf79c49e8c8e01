"""Refitting the ``host`` table's coefficients on whole-model measurements by non-negative
least squares on the cost model's own terms (Lawson & Hanson, "Solving Least Squares
Problems", 1974)."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics

import numpy as np
import onnxruntime as ort

from qaev.files import write_atomic
from qaev.hostfit.timing import (
    fidelity_configs, noise_quantizer, random_feed, resolve_model, time_interleaved, timed_model,
)

__all__ = ["with_values", "cost_features", "fit_whole_model", "estimate_rows", "whole_model"]

def with_values(table, *, rates: dict | None = None, **scalars):
    """A copy of ``table`` with some values replaced (units and sources kept).

    Args:
        table: a :class:`~qaev.hardware.HardwareTable`.
        rates: native pair key -> MAC/s.
        **scalars: scalar field (``memory_bandwidth``, ``act_conversion_time``...) -> value.
    """
    from types import MappingProxyType

    changes = {name: dataclasses.replace(getattr(table, name), value=float(v)) for name, v in scalars.items()}
    if rates:
        peak = dict(table.peak_macs_per_s)
        for key, value in rates.items():
            peak[key] = dataclasses.replace(peak[key], value=float(value))
        changes["peak_macs_per_s"] = MappingProxyType(peak)
    return dataclasses.replace(table, **changes)


def cost_features(layers, config, table, *, batch: int = 1) -> dict[str, float]:
    """The terms the cost model sums for ``config``, with the roofline bounds of ``table``.

    ``est_latency_s`` of :func:`qaev.hardware.estimate` equals
    ``sum_p macs:<p> / rate_p + bytes / bandwidth + layers * layer_overhead
    + act_elements * act_conversion_time + weight_elements * weight_conversion_time``,
    so with the bounds held fixed the estimate is linear in the inverse coefficients.

    Returns:
        ``macs:<pair>`` (MACs of compute-bound layers executing each native pair),
        ``bytes`` (bytes of memory-bound layers), ``layers``, ``act_elements``,
        ``weight_elements``, and ``est_s`` (the estimate itself, for checking).
    """
    from qaev.quantize.sizes import estimate_cost

    report = estimate_cost(layers, config, table, batch=batch)
    act_only = with_values(table, act_conversion_time=1.0, weight_conversion_time=0.0)
    weight_only = with_values(table, act_conversion_time=0.0, weight_conversion_time=1.0)
    out = {f"macs:{p}": 0.0 for p in table.peak_macs_per_s}
    out.update(bytes=0.0, layers=float(len(report.rows)),
               act_elements=sum(r.conversion_s for r in estimate_cost(layers, config, act_only, batch=batch).rows),
               weight_elements=sum(r.conversion_s
                                   for r in estimate_cost(layers, config, weight_only, batch=batch).rows),
               est_s=report.est_latency_ms / 1e3)
    bandwidth = table.memory_bandwidth.value
    for row in report.rows:
        if row.compute_s >= row.memory_s:
            out[f"macs:{row.executed}"] += row.macs
        else:
            out["bytes"] += row.memory_s * bandwidth
    return out


def _terms(table, tied) -> list[tuple[str, dict[str, float]]]:
    """Fittable terms: ``(field, {feature: current seconds per unit})``.

    A term's coefficient is an inverse rate (s per MAC, s per byte) or a time per element;
    a pair tied to another pair shares its term (its MACs join that pair's column).
    """
    terms: dict[str, dict[str, float]] = {}
    for pair, q in table.peak_macs_per_s.items():
        owner = tied.get(pair, pair)
        terms.setdefault(f"peak_macs_per_s.{owner}", {})[f"macs:{pair}"] = 1.0 / q.value
    terms["memory_bandwidth"] = {"bytes": 1.0 / table.memory_bandwidth.value}
    terms["act_conversion_time"] = {"act_elements": table.act_conversion_time.value}
    terms["weight_conversion_time"] = {"weight_elements": table.weight_conversion_time.value}
    return list(terms.items())


def fit_whole_model(samples, table, *, tied=None, min_share: float = 0.02, iterations: int = 10):
    """Least-squares refit of a table's coefficients from whole-model latencies.

    Minimises the relative error of the estimate against the measured latency with
    non-negative least squares over the inverse MAC rate of each native pair, the inverse
    bandwidth, and the activation and weight conversion times. There is no per-model
    constant: every config of a model costs all its layers, so such a constant is collinear
    with the model's MACs at the rates, and the time of ops that are not layers (Add,
    pooling) is absorbed into the rates; ``layer_overhead`` is kept for the same reason.
    A term whose share of the current estimates is below ``min_share``, or whose fit comes
    out zero, cannot be identified from the data and keeps its current value (the other
    terms are fitted around it). Roofline bounds are recomputed with the new coefficients
    until they stop changing.

    Args:
        samples: ``(model_id, layers, config, batch, measured_s)`` tuples (several models
            may be mixed).
        table: the starting :class:`~qaev.hardware.HardwareTable`.
        tied: native pair -> pair whose rate it shares (one fitted rate for both).
        min_share: smallest share of the summed estimates a term needs to be fitted.
        iterations: most bound-update rounds.

    Returns:
        ``(table, info)``: the refitted table and a dict with the fitted fields (MAC/s, B/s,
        s/element), the kept fields and the fit's relative RMS error.
    """
    tied = dict(tied or {})
    measured = np.array([s[4] for s in samples], dtype=float)
    weights = 1.0 / measured
    previous_bounds, info = None, {}
    for _ in range(max(iterations, 1)):
        feats = [cost_features(layers, config, table, batch=batch) for _, layers, config, batch, _ in samples]
        terms = _terms(table, tied)
        total = sum(f["est_s"] for f in feats)
        free = [name for name, parts in terms
                if sum(f[k] * c for f in feats for k, c in parts.items()) >= min_share * total]
        names, coef, fitted_s = _fit_free_terms(feats, terms, free, table=table, measured=measured,
                                                weights=weights)
        values = dict(zip(names, coef))
        table, rates, scalars = _apply_fit(table, values, tied=tied)
        info = {
            "fitted": {**{f"peak_macs_per_s.{p}": r for p, r in rates.items()}, **scalars},
            "kept": [name for name, _ in terms if name not in values],
            "tied": tied,
            "relative_rms": float(np.sqrt(np.mean(((fitted_s - measured) / measured) ** 2))),
        }
        bounds = [tuple(r.bound for r in estimate_rows(layers, config, table, batch))
                  for _, layers, config, batch, _ in samples]
        if bounds == previous_bounds:
            break
        previous_bounds = bounds
    return table, info


def _fit_free_terms(feats, terms, free, *, table, measured: np.ndarray, weights: np.ndarray):
    """Weighted non-negative least squares over the ``free`` terms, the others held at
    their current values; a term fitted to zero is held too and the fit repeated.

    Args:
        feats: :func:`cost_features` of each sample.
        terms: :func:`_terms` of ``table``.
        free: names of the terms to fit.
        table: the current table (its ``layer_overhead`` is never fitted).
        measured: measured latency of each sample, seconds.
        weights: weight of each sample's residual (the inverse of ``measured``: relative error).

    Returns:
        ``(names, coef, fitted_s)``: the fitted terms, their coefficients and the fitted
        latency of each sample.
    """
    from scipy.optimize import nnls

    while True:
        base = np.array([f["layers"] * table.layer_overhead.value
                         + sum(f[k] * c for name, parts in terms if name not in free for k, c in parts.items())
                         for f in feats])
        x = np.array([[sum(f[k] for k in parts) for name, parts in terms if name in free] for f in feats])
        coef = nnls(x * weights[:, None], (measured - base) * weights)[0] if free else np.zeros(0)
        names = [name for name, _ in terms if name in free]
        zero = [name for name, k in zip(names, coef) if k <= 0.0]
        if not zero:
            break
        free = [name for name in free if name not in zero]
    return names, coef, (x @ coef if len(coef) else 0.0) + base


def _apply_fit(table, values: dict, *, tied: dict):
    """``table`` with the fitted term coefficients ``values`` (inverse rates, s/element)
    written back as rates and times.

    Returns:
        ``(table, rates, scalars)``: the new table, the MAC/s set per native pair (tied
        pairs included) and the scalar fields set.
    """
    rates = {pair: 1.0 / values[f"peak_macs_per_s.{tied.get(pair, pair)}"] for pair in table.peak_macs_per_s
             if f"peak_macs_per_s.{tied.get(pair, pair)}" in values}
    scalars = {name: (1.0 / k if name == "memory_bandwidth" else k) for name, k in values.items()
               if not name.startswith("peak_macs_per_s.")}
    return with_values(table, rates=rates, **scalars), rates, scalars


def estimate_rows(layers, config, table, batch: int):
    """The per-layer rows of :func:`qaev.hardware.estimate`."""
    from qaev.quantize.sizes import estimate_cost

    return estimate_cost(layers, config, table, batch=batch).rows


def whole_model(args) -> dict:
    from scipy.stats import spearmanr

    from qaev.hardware import load_table
    from qaev.quantize.sizes import estimate_cost

    model, source = resolve_model(args.problem, args.model)
    quantizer = noise_quantizer(model, batch=args.batch, seed=args.seed, threads=args.threads)
    layers = quantizer.layers
    held_out = {c.key() for _, c in fidelity_configs(layers, args.exclude_configs, seed=args.exclude_seed)}
    configs = fidelity_configs(layers, args.configs, seed=args.seed, uniform=False, exclude=held_out)
    saved = {}
    if args.measurements and os.path.isfile(args.measurements):
        with open(args.measurements, encoding="utf-8") as fh:
            saved = {row["key"]: row for row in json.load(fh)["rows"]}
    if all(c.key() in saved for _, c in configs):
        graphs = [saved[c.key()]["graph"] for _, c in configs]
        times = [saved[c.key()]["times_ms"] for _, c in configs]
    else:
        built = [timed_model(quantizer, c, args.graph) for _, c in configs]
        graphs = [g for _, g in built]
        feed = random_feed(model, args.batch, args.seed)
        times = time_interleaved([m for m, _ in built], feed, repeats=args.repeats, threads=args.threads,
                                 seed=args.seed)
        if args.measurements:
            write_atomic(args.measurements, json.dumps({"command": args.command, "rows": [
                {"label": label, "key": c.key(), "graph": g, "times_ms": t}
                for (label, c), g, t in zip(configs, graphs, times)]}, indent=1))
    measured_s = [statistics.median(t) / 1e3 for t in times]
    start = load_table(args.table)
    samples = [(source, layers, c, args.batch, m) for (_, c), m in zip(configs, measured_s)]
    tied = dict(item.split("=", 1) for item in args.tie)
    table, info = fit_whole_model(samples, start, tied=tied)
    before = [estimate_cost(layers, c, start, batch=args.batch).est_latency_ms for _, c in configs]
    after = [estimate_cost(layers, c, table, batch=args.batch).est_latency_ms for _, c in configs]
    return {
        "command": args.command,
        "model": source,
        "configs": len(configs),
        "held_out": f"the {args.exclude_configs} configs of seed {args.exclude_seed} (benchmark set) excluded",
        "graphs": sorted(set(graphs)),
        "onnxruntime": ort.__version__,
        "machine": f"{platform.machine()} {platform.processor()}".strip(),
        "threads": args.threads,
        "batch": args.batch,
        "repeats": args.repeats,
        **info,
        "spearman_fit_set_before": float(spearmanr(measured_s, before).statistic),
        "spearman_fit_set_after": float(spearmanr(measured_s, after).statistic),
        "rows": [{"label": label, "measured_ms": 1e3 * m, "est_before_ms": b, "est_after_ms": a}
                 for (label, _), m, b, a in zip(configs, measured_s, before, after)],
    }


