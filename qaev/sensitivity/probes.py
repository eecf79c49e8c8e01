"""Per-layer sensitivity: the metric drop when one layer alone is quantized.

For every searchable layer and bit width, the layer is quantized while every other layer
keeps a context setting (float by default) and the model is measured with the problem's
own evaluator, through :meth:`~qaev.search.problem.QuantizationProblem.evaluate_config`, so each
probe lands in the run's evaluation store and a rerun is free. Beside the measured drop,
the output SQNR against the float model's outputs (on a prefix of the evaluation data) is
recorded as a cheap, label-free proxy.

This is the measured counterpart of the sensitivity analyses that mixed-precision methods
start from: AIMET AMP's per-quantizer-group sweep (Qualcomm AIMET documentation,
"Automatic Mixed Precision") and the Hessian-trace sensitivity of HAWQ-V3 (Yao et al.,
"HAWQ-V3: Dyadic Neural Network Quantization", ICML 2021).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from qaev.documents import parse_document
from qaev.evaluation import metrics
from qaev.config import ACT_SETTINGS, ActMode, LayerConfig, QuantConfig
from qaev.errors import ConfigError, QaevError
from qaev.quantize.plan import fit_to_layer
from qaev.runtime.store import Record

__all__ = ["SensitivityEntry", "SensitivityTable", "layer_sensitivity", "output_sqnr", "SENSITIVITY_VERSION"]

SENSITIVITY_VERSION = 1


def _bits_order(bits: int | None) -> int:
    return 99 if bits is None else bits


def _w(bits: int | None) -> str:
    return "float" if bits is None else f"w{bits}"


@dataclass(frozen=True, kw_only=True)
class SensitivityEntry:
    """One probe: ``layer`` at ``bits`` (None: float weight), every other layer in context.

    Attributes:
        layer, op_type: the probed layer.
        bits: its weight bits (None keeps the weight float).
        drop: metric points lost vs the float model (measured; failed probes count as
            losing the whole float metric).
        metric: the measured metric, or None when the probe failed or was not needed.
        sqnr_db: first-output SQNR vs the float model in dB (``inf``: identical outputs).
        key: the store key of the probe's config (None when nothing was quantized).
        error: why the probe failed, or None.
    """

    layer: str
    op_type: str
    bits: int | None
    drop: float
    metric: float | None
    sqnr_db: float
    key: str | None = None
    error: str | None = None


def _enc(value):
    return value if not isinstance(value, float) or math.isfinite(value) else repr(value)


def _dec(value):
    return float(value) if isinstance(value, str) else value


@dataclass(frozen=True, kw_only=True)
class SensitivityTable:
    """Measured per-layer sensitivities of one model on one dataset.

    Attributes:
        metric: the metric name; float_value: the float model's value of it.
        act: activation setting of the probed layer (a key of :data:`ACT_SETTINGS`).
        context: ``float`` when the other layers stay float, else a description.
        layers: probed layers in graph order; bits: probed widths.
        entries: one :class:`SensitivityEntry` per (layer, bits).
        model_sha256: the float model; n_eval: samples measured; sqnr_samples: samples
            behind each SQNR.
    """

    metric: str
    float_value: float
    act: str
    context: str
    layers: tuple[str, ...]
    bits: tuple[int | None, ...]
    entries: tuple[SensitivityEntry, ...]
    model_sha256: str | None = None
    n_eval: int | None = None
    sqnr_samples: int | None = None
    version: int = SENSITIVITY_VERSION

    def entry(self, layer: str, bits: int | None) -> SensitivityEntry | None:
        """The probe of ``layer`` at ``bits``, or None when it was not measured."""
        for e in self.entries:
            if e.layer == layer and e.bits == bits:
                return e
        return None

    def drop(self, layer: str, bits: int | None) -> float | None:
        """Measured drop of ``layer`` at ``bits``, or None."""
        e = self.entry(layer, bits)
        return None if e is None else e.drop

    def matrix(self, w_bits: Sequence[int | None], *, layers: Sequence[str] | None = None) -> np.ndarray:
        """``[layer, w_bits index]`` -> drop (larger = more sensitive), finite everywhere.

        Widths that were not probed take the drop of the nearest probed width below them
        (pessimistic), else above; a float weight that was not probed scores 0. Layers not
        probed take the largest drop of their column (pessimistic).

        Args:
            w_bits: the columns, e.g. ``problem.space.w_bits``.
            layers: the rows (default: the probed layers).

        Example:
            >>> problem.sensitivity = table.matrix(problem.space.w_bits,  # doctest: +SKIP
            ...     layers=[l.name for l in problem.space.searchable])
        """
        rows = list(layers if layers is not None else self.layers)
        out = np.full((len(rows), len(w_bits)), np.nan)
        for i, name in enumerate(rows):
            probed = sorted((b for b in self.bits if self.entry(name, b) is not None), key=_bits_order)
            for j, b in enumerate(w_bits):
                if not probed:
                    continue
                if b in probed:
                    out[i, j] = self.drop(name, b)
                elif b is None:
                    out[i, j] = 0.0
                else:
                    below = [p for p in probed if _bits_order(p) < b]
                    out[i, j] = self.drop(name, below[-1] if below else probed[0])
        for j in range(out.shape[1]):
            col = out[:, j]
            col[np.isnan(col)] = np.nanmax(col) if np.isfinite(col).any() else 0.0
        return out

    def sqnr_matrix(self, w_bits: Sequence[int | None], *, layers: Sequence[str] | None = None) -> np.ndarray:
        """``[layer, w_bits index]`` -> SQNR in dB (NaN where not probed)."""
        rows = list(layers if layers is not None else self.layers)
        out = np.full((len(rows), len(w_bits)), np.nan)
        for i, name in enumerate(rows):
            for j, b in enumerate(w_bits):
                e = self.entry(name, b)
                if e is not None:
                    out[i, j] = e.sqnr_db
        return out

    def ranked(self, bits: int | None = None) -> list[SensitivityEntry]:
        """Entries at ``bits`` (default: the fewest probed bits), most sensitive first
        (largest drop, ties broken by lower SQNR)."""
        bits = min(self.bits, key=_bits_order) if bits is None else bits
        chosen = [e for e in self.entries if e.bits == bits]
        return sorted(chosen, key=lambda e: (-e.drop, e.sqnr_db if not math.isnan(e.sqnr_db) else -math.inf))

    def format(self) -> str:
        """A text table ranked by the fewest-bits drop."""
        head = f"{'layer':32s} {'op':8s}" + "".join(f" {'drop@' + _w(b):>9s} {'sqnr@' + _w(b):>9s}" for b in self.bits)
        lines = [f"sensitivity ({self.metric}, float {self.float_value:.2f}; probe act {self.act}, "
                 f"others {self.context}; drops measured, SQNR on {self.sqnr_samples} samples)", head]
        for top in self.ranked():
            cells = ""
            for b in self.bits:
                e = self.entry(top.layer, b)
                cells += " " + (f"{e.drop:9.2f} {e.sqnr_db:9.1f}" if e else f"{'-':>9s} {'-':>9s}")
            lines.append(f"{top.layer[:32]:32s} {top.op_type[:8]:8s}{cells}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """JSON text (non-finite floats as ``"inf"``/``"-inf"``/``"nan"``)."""
        data = asdict(self)
        data["entries"] = [{k: _enc(v) for k, v in e.items()} for e in data["entries"]]
        data["float_value"] = _enc(data["float_value"])
        return json.dumps({"schema": "qaev.sensitivity/1", **data}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "SensitivityTable":
        """Inverse of :meth:`to_json`.

        Raises:
            ConfigError: not a sensitivity table, or of another version.
        """
        data = parse_document(text, where="sensitivity table", fmt="json")
        if not isinstance(data, dict) or data.pop("schema", None) != "qaev.sensitivity/1":
            raise ConfigError("sensitivity table: missing schema 'qaev.sensitivity/1'")
        if data.get("version") != SENSITIVITY_VERSION:
            raise ConfigError(f"sensitivity table: version {data.get('version')!r} is not supported")
        try:
            entries = tuple(SensitivityEntry(**{k: _dec(v) if k in ("drop", "sqnr_db") else v for k, v in e.items()})
                            for e in data.pop("entries"))
            return cls(**{**data, "float_value": _dec(data["float_value"]), "layers": tuple(data["layers"]),
                          "bits": tuple(data["bits"]), "entries": entries})
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"sensitivity table: bad field ({exc})") from None


def _probe(layer, bits, act: str, space) -> LayerConfig | None:
    mode, a_bits = ACT_SETTINGS[act]
    if mode is ActMode.DYNAMIC and (bits is None or bits > 8):
        mode = ActMode.FLOAT
    cfg = LayerConfig(w_bits=bits, act=mode, a_bits=a_bits, granularity=space.granularities[0],
                      symmetric=space.symmetric[0], rounding=space.roundings[0],
                      bias_correction=space.bias_corrections[0], weight_range=space.weight_range)
    fitted = fit_to_layer(cfg, layer)
    return None if fitted is None else fitted.effective()


def _with_layer(base: QuantConfig | None, name: str, cfg: LayerConfig | None, space) -> QuantConfig:
    if base is None:
        return QuantConfig(layers={name: cfg} if cfg else {}, calibration=space.calibrations[0],
                           scale_rule=space.scale_rules[0])
    layers = {k: v for k, v in base.layers.items() if k != name}
    if cfg is not None:
        layers[name] = cfg
    return QuantConfig(layers=layers, calibration=base.calibration, scale_rule=base.scale_rule)


def output_sqnr(problem, config: QuantConfig, n: int | None) -> float:
    """First-output SQNR in dB of ``config`` against the float model on the first ``n``
    evaluation samples (None: all; 0: NaN; ``inf`` when nothing is quantized; NaN when the
    model cannot be built or run)."""
    from qaev.model.session import make_session

    if n == 0:
        return math.nan
    if not any(not c.is_float for c in config.layers.values()):
        return math.inf
    evaluator = problem.evaluator
    data = evaluator.data if n is None or not hasattr(evaluator.data, "head") else evaluator.data.head(n)
    try:
        session = make_session(problem.quantizer.build(config), threads=evaluator.threads)
        out = evaluator.run(session, data.batches(batch_size=evaluator.batch_size))
    except QaevError:
        return math.nan
    return metrics.sqnr_db(out, evaluator.reference[:len(out)])


def _probe_targets(problem, *, act: str, layers: Sequence[str] | None) -> tuple[dict, list[str]]:
    """The searchable layers by name and the names to probe, after checking the request.

    Raises:
        ConfigError: unknown ``act``, a problem that does not measure ``acc_drop``, or a
            layer that is not searchable.
    """
    if act not in ACT_SETTINGS:
        raise ConfigError(f"act: {act!r} is not one of {', '.join(ACT_SETTINGS)}")
    if "acc_drop" not in problem.objectives and "max_drop" not in problem.constraints:
        raise ConfigError("sensitivity needs a problem that measures acc_drop")
    by_name = {layer.name: layer for layer in problem.space.searchable}
    chosen = list(by_name) if layers is None else list(layers)
    for name in chosen:
        if name not in by_name:
            raise ConfigError(f"layers: {name!r} is not a searchable layer")
    return by_name, chosen


def _probe_entry(problem, layer, bits: int | None, *, act: str, base: QuantConfig | None,
                 run: Callable[[QuantConfig], Record], lost: float, sqnr_samples: int | None) -> SensitivityEntry:
    """Measure ``layer`` alone at ``bits``, the other layers per ``base``.

    Args:
        lost: the drop charged when the probe fails.
        run: how the probe's config is measured.

    Returns:
        The entry; with ``base`` None and nothing to quantize, the float model's (no run).
    """
    cfg = _probe(layer, bits, act, problem.space)
    config = _with_layer(base, layer.name, cfg, problem.space)
    if base is None and cfg is None:  # nothing quantized: the float model itself
        return SensitivityEntry(layer=layer.name, op_type=layer.op_type, bits=bits, drop=0.0,
                                metric=problem.evaluator.float_value, sqnr_db=math.inf)
    record = run(config)
    ok = record.ok and record.objectives.get("acc_drop") is not None
    return SensitivityEntry(
        layer=layer.name, op_type=layer.op_type, bits=bits, drop=float(record.objectives["acc_drop"]) if ok else lost,
        metric=record.metric, sqnr_db=output_sqnr(problem, config, sqnr_samples) if ok else math.nan,
        key=record.key, error=record.error)


def layer_sensitivity(problem, *, bits: Sequence[int | None] = (2, 4, 8), act: str = "float",
                      base: QuantConfig | None = None, layers: Sequence[str] | None = None,
                      evaluate: Callable[[QuantConfig], Record] | None = None,
                      sqnr_samples: int | None = 256) -> SensitivityTable:
    """Measure the drop of quantizing each searchable layer alone, at each width.

    Args:
        problem: a :class:`~qaev.search.problem.QuantizationProblem` measuring ``acc_drop``.
        bits: weight widths to probe (None: float weight, activations per ``act``).
        act: activation setting of the probed layer: ``float`` (weight-only) or ``a8``
            (also ``a4``, ``a16``, ``dyn8``). Granularity, symmetry, rounding and bias
            correction are the space's first; the weight range is the space's.
        base: the setting of every other layer (default: float, the usual definition).
        layers: names of the layers to probe (default: every searchable layer).
        evaluate: how a config is measured (default ``problem.evaluate_config``; the
            baselines pass a budget-counting wrapper).
        sqnr_samples: evaluation samples behind each SQNR (None: all; 0: skip, NaN).

    Returns:
        The :class:`SensitivityTable`.

    Raises:
        ConfigError: unknown ``act``, a layer that is not searchable, or a problem that does
            not measure ``acc_drop``.

    Example:
        >>> from qaev.problems import get_problem
        >>> problem = get_problem("digits", eval=100)
        >>> table = layer_sensitivity(problem, bits=(2, 8))
        >>> table.matrix(problem.space.w_bits).shape
        (5, 3)
    """
    by_name, chosen = _probe_targets(problem, act=act, layers=layers)
    run = evaluate or problem.evaluate_config
    widths = tuple(sorted(dict.fromkeys(bits), key=_bits_order))
    lost = abs(problem.evaluator.float_value) or 100.0
    entries = [_probe_entry(problem, by_name[name], b, act=act, base=base, run=run, lost=lost,
                            sqnr_samples=sqnr_samples)
               for name in chosen for b in widths]
    n_eval = len(problem.evaluator.data)
    return SensitivityTable(metric=problem.evaluator.metric.name, float_value=problem.evaluator.float_value, act=act,
                            context="float" if base is None else "base config", layers=tuple(chosen), bits=widths,
                            entries=tuple(entries), model_sha256=problem.quantizer.model.sha256, n_eval=n_eval,
                            sqnr_samples=n_eval if sqnr_samples is None else min(sqnr_samples, n_eval))
