"""Everything a report shows, read from a run directory (and the float model it names)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from onnx import numpy_helper

from qaev.documents import read_document
from qaev.config import QuantConfig, act_name
from qaev.config_io import load_config
from qaev.errors import ConfigError, ModelError, QaevError
from qaev.model.layers import LayerInfo, find_layers
from qaev.runtime.rundir import read_front

__all__ = ["LayerRow", "Point", "ReportData", "gather", "act_label"]


def act_label(cfg) -> str:
    """Short activation label of a layer config: ``a8``, ``dyn8``, or ``float``."""
    return "float" if cfg is None else act_name(cfg.act, cfg.a_bits)


@dataclass(frozen=True)
class LayerRow:
    """One layer of one point.

    Attributes:
        name, op_type: the layer.
        w_bits: weight bits (None: float); granularity, symmetric: the weight grid.
        act: activation label (:func:`act_label`).
        weight_bytes: exact stored bytes of the weight (values, scales, zero points).
        est_latency_ms: estimated latency from the run's hardware table, or None.
    """

    name: str
    op_type: str
    w_bits: int | None
    granularity: str
    symmetric: bool
    act: str
    weight_bytes: int
    est_latency_ms: float | None = None


@dataclass
class Point:
    """One front point with its config and per-layer breakdown.

    ``host_latency_ms`` and ``host_speedup``: its exported file's latency at batch 1 and
    how many times faster than the float model it ran, measured side by side at the end
    of the search (front.json's ``host_latency`` says how), or None. ``sizes`` is
    front.json's (``bit_count_mb``, ``file_mb``, ``x_smaller``; empty for runs written
    before it). ``near``: a point the front keeps although another point beats it, by less
    than its drop's standard error (:meth:`~qaev.evaluation.scoring.Scoring.front`).
    """

    id: str
    objectives: dict
    metric: float | None
    config: QuantConfig
    config_text: str
    exported: bool
    rows: list[LayerRow] = field(default_factory=list)
    host_latency_ms: float | None = None
    host_speedup: float | None = None
    sizes: dict = field(default_factory=dict)
    near: bool = False

    @property
    def total_bytes(self) -> int:
        """Exact bytes of the layers' weights (other initializers not included)."""
        return sum(r.weight_bytes for r in self.rows)


@dataclass
class ReportData:
    """What :mod:`qaev.report.plots` and :mod:`qaev.report.html` draw.

    Attributes:
        run_dir: the run directory.
        doc: ``front.json`` as read.
        points: the front points, in front.json's order.
        layer_names: every layer in graph order (or config order without the model).
        baselines: ``[{"name", "objectives"}]`` from ``baselines.json`` (may be empty).
        other_bytes: bytes of the float model's other initializers (biases, ...), or None.
        hardware: the hardware table named by front.json, or None.
        notes: what the report could not show, and why.
    """

    run_dir: Path
    doc: dict
    points: list[Point]
    layer_names: list[str]
    baselines: list[dict]
    other_bytes: int | None
    hardware: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def objectives(self) -> list[dict]:
        """``[{"name", "kind", "unit"}]`` from front.json."""
        return list(self.doc["objectives"])


def _baselines(run_dir: Path, names: list[str]) -> list[dict]:
    path = run_dir / "baselines.json"
    if not path.is_file():
        return []
    data = read_document(path, what="baselines", fmt="json")
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a list of {{name, objectives}}")
    out = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) \
                or not isinstance(item.get("objectives"), dict):
            raise ConfigError(f"{path}: entry {i} needs a 'name' string and an 'objectives' mapping")
        unknown = sorted(set(item["objectives"]) - set(names))
        if unknown:
            raise ConfigError(f"{path}: entry {item['name']!r}: objective(s) {', '.join(unknown)} not in the front")
        out.append({"name": item["name"], "objectives": dict(item["objectives"])})
    return out


def _layers(doc: dict, model: Path | None, notes: list[str]):
    """The float model's layers and other-initializer bytes (a run on a layer list: the
    list front.json records), or (None, None) with a note."""
    from qaev.model.graph import load_model

    if model is None and not doc["model"].get("path") and doc.get("layers"):  # a run on a layer list
        from qaev.model.shapes import layers_from_json

        return layers_from_json(doc["layers"]), int(doc.get("other_bytes", 0))
    path = Path(model) if model is not None else (Path(doc["model"]["path"]) if doc["model"].get("path") else None)
    if path is None or not path.is_file():
        if model is not None:
            raise ModelError(f"{model}: no such model file")
        notes.append(f"per-layer breakdown unavailable: float model not found at {path} (pass --model)")
        return None, None
    float_model = load_model(path)
    if float_model.sha256 != doc["model"]["sha256"]:
        raise ModelError(f"{path}: sha256 differs from the model this front was searched on")
    layers = find_layers(float_model)
    weights = {layer.weight for layer in layers if layer.weight}
    other = sum(numpy_helper.to_array(init).nbytes for init in float_model.proto.graph.initializer
                if init.name not in weights)
    return layers, other


def _rows(layers: list[LayerInfo], config: QuantConfig, table, memo: dict) -> list[LayerRow]:
    """Each layer's row under ``config``; ``memo`` (one per report) keeps the rows and cost
    estimates of settings already seen (a large front repeats them many times)."""
    from qaev.quantize.sizes import estimate_cost, weight_bytes

    latency = {}
    if table is not None:
        costs = estimate_cost(layers, config, table, memo=memo.setdefault("estimates", {}))
        latency = {r.name: r.est_latency_s * 1e3 for r in costs.rows}
    rows, seen = [], memo.setdefault("rows", {})
    for layer in layers:
        cfg = config.layer(layer.name)
        key = (layer.name, cfg)
        if key not in seen:
            eff = cfg.effective() if cfg is not None else None
            seen[key] = LayerRow(name=layer.name, op_type=layer.op_type, w_bits=eff.w_bits if eff else None,
                                 granularity=eff.granularity.value if eff and eff.w_bits else "-",
                                 symmetric=bool(eff.symmetric) if eff else True, act=act_label(eff),
                                 weight_bytes=weight_bytes(layer, cfg))
        rows.append(replace(seen[key], est_latency_ms=latency.get(layer.name)))
    return rows


def _check_totals(points: list[Point], names: list[str], other: int, has_table: bool, notes: list[str]) -> None:
    """Note any point whose per-layer sums disagree with its front.json objectives."""
    for p in points:
        if "size_mb" in names and abs((p.total_bytes + other) / 1e6 - p.objectives["size_mb"]) > 1e-9:
            notes.append(f"{p.id}: per-layer bytes sum to {(p.total_bytes + other) / 1e6} MB, "
                         f"front.json says {p.objectives['size_mb']} MB")
        if has_table and "est_latency_ms" in names:
            total = sum(r.est_latency_ms or 0.0 for r in p.rows)
            if abs(total - p.objectives["est_latency_ms"]) > 1e-6 * max(1.0, abs(total)):
                notes.append(f"{p.id}: per-layer latency estimates sum to {total:.6g} ms, front.json says "
                             f"{p.objectives['est_latency_ms']:.6g} ms (shapes resolved differently?)")


def gather(run_dir: str | Path, *, model: str | Path | None = None) -> ReportData:
    """Read a finished run directory.

    Args:
        run_dir: the directory ``qaev search`` wrote.
        model: the float model, if it moved since the search (default: front.json's path).

    Raises:
        ConfigError: no valid front.json, a config file missing, or a malformed baselines.json.
        ModelError: ``model`` is missing or is not the model the front was searched on.
    """
    run_dir = Path(run_dir)
    doc = read_front(run_dir)
    notes: list[str] = []
    layers, other = _layers(doc, model, notes)
    table = None
    hardware = doc.get("hardware")
    if hardware and layers is not None:
        from qaev.hardware import load_table

        try:
            table = load_table(hardware)
        except QaevError as exc:
            notes.append(f"latency estimates unavailable: {exc}")
    points, memo = [], {}
    for p in doc["points"]:
        config = load_config(run_dir / p["config"])
        points.append(Point(id=p["id"], objectives=dict(p["objectives"]), metric=p.get("metric"), config=config,
                            config_text=(run_dir / p["config"]).read_text(),  # the file as written
                            exported=(run_dir / "models" / f"{p['id']}.onnx").is_file(),
                            rows=_rows(layers, config, table, memo) if layers is not None else [],
                            host_latency_ms=p.get("host_latency_ms"), host_speedup=p.get("host_speedup"),
                            sizes=dict(p.get("sizes") or {}), near=bool(p.get("near"))))
    if layers is not None:
        layer_names = [layer.name for layer in layers]
    else:
        layer_names = list(dict.fromkeys(name for p in points for name in p.config.layers))
    names = [o["name"] for o in doc["objectives"]]
    if layers is not None:
        _check_totals(points, names, other, table is not None, notes)
    return ReportData(run_dir=run_dir, doc=doc, points=points, layer_names=layer_names,
                      baselines=_baselines(run_dir, names), other_bytes=other,
                      hardware=hardware if table is not None else None, notes=notes)
