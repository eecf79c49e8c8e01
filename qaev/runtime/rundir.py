"""A search's run directory: settings, the evaluation memo, history, front and configs.

    DIR/settings.json       the run's spec (qaev.search.spec.RunSpec), the model's hash and the
                            data sizes (a resume must match them)
    DIR/evaluations.jsonl   every evaluated candidate, appended as it finishes
    DIR/history.jsonl       one line per generation
    DIR/front.json          the Pareto front (schema ``qaev.front/1``)
    DIR/configs/<id>.yaml   one self-contained config per front point
"""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from qaev.files import write_atomic
from qaev.config import QuantConfig
from qaev.config_io import save_config
from qaev.errors import ConfigError
from qaev.evaluation.latency import SideBySide
from qaev.search.objectives import get_objective
from qaev.runtime.store import Record

__all__ = ["prepare_run_dir", "write_front", "append_history", "read_front", "versions", "FRONT_SCHEMA"]

FRONT_SCHEMA = "qaev.front/1"


def versions() -> dict:
    """Versions of the pieces that decide the numbers."""
    import onnx
    import onnxruntime
    import pymoo

    from qaev import __version__

    return {"qaev": __version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "pymoo": pymoo.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def _write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def prepare_run_dir(out: Path, settings: dict, *, resume: bool, force: bool) -> Path:
    """Create or reopen ``out``.

    Raises:
        ConfigError: ``out`` is not empty and neither ``resume`` nor ``force`` is given,
            it is not writable, or ``resume`` finds different settings.
    """
    out = Path(out)
    existing = out.exists() and any(out.iterdir()) if out.is_dir() else out.exists()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory")
    saved = out / "settings.json"
    if existing and resume:
        if not saved.is_file():
            raise ConfigError(f"--resume: {out} holds no settings.json; it is not a qaev run directory")
        before = json.loads(saved.read_text())
        old, new = _flat(before), _flat(settings)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE)
        if changed:
            raise ConfigError(f"--resume: settings differ from the run in {out}: {', '.join(changed)}")
        return out
    if existing and not force:
        raise ConfigError(f"--out: {out} is not empty; pass --resume to continue that run or --force to overwrite")
    try:
        out.mkdir(parents=True, exist_ok=True)
        if existing and force:
            for name in ("evaluations.jsonl", "history.jsonl", "front.json", "settings.json"):
                (out / name).unlink(missing_ok=True)
        _write_json(saved, settings)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write to {out} ({exc.strerror or exc})") from None
    return out


#: Settings a resumed run may change (a longer search).
RESUMABLE = ("spec.search.generations", "spec.search.time_minutes")


def _flat(data, prefix: str = "") -> dict:
    """Dotted path -> JSON text of every leaf of nested mappings."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = json.dumps(value, sort_keys=True)
    return out


def append_history(out: Path, row: dict) -> None:
    """Append one generation line to ``history.jsonl``."""
    with open(out / "history.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _order(front: Sequence[Record], objectives: Sequence[str]) -> list[Record]:
    return sorted(front, key=lambda r: tuple(r.objectives[n] for n in reversed(objectives)))


def _point(point_id: str, record: Record, objectives: Sequence[str], latency: SideBySide | None) -> dict:
    point = {"id": point_id, "key": record.key, "objectives": {n: record.objectives[n] for n in objectives},
             "metric": record.metric, "config": f"configs/{point_id}.yaml"}
    if record.validation_drop is not None:
        point["validation"] = {"metric": record.validation_metric, "acc_drop": record.validation_drop}
    if latency is not None and record.key in latency.ms:
        point["host_latency_ms"] = latency.ms[record.key]
        point["host_speedup"] = latency.speedup(record.key)
    return point


def _latency_doc(latency: SideBySide, reference: str) -> dict:
    return {**latency.settings(), "float_ms": latency.ms[reference],
            "what": (f"median ms of one run of each point's exported file and of the float model, batch "
                     f"{latency.batch}, {latency.threads} ONNX Runtime thread(s) on this host, measured side by "
                     "side in interleaved rounds (points: host_latency_ms, host_speedup = float / point)")}


def recommend(points: Sequence[dict], objectives: Sequence[str], tolerance: float | None) -> dict | None:
    """The point to ship: the one with the least first cost objective (the first objective
    that is not ``acc_drop``) among those within ``tolerance`` metric points of float, judged
    on the validation split where the points carry one (else on the search split)."""
    costs = [n for n in objectives if n != "acc_drop"]
    if tolerance is None or "acc_drop" not in objectives or not costs:
        return None
    on_validation = all("validation" in p for p in points) and bool(points)
    drop = (lambda p: p["validation"]["acc_drop"]) if on_validation else (lambda p: p["objectives"]["acc_drop"])
    within = [p for p in points if drop(p) <= tolerance]
    if not within:
        return None
    best = min(within, key=lambda p: (p["objectives"][costs[0]], drop(p)))
    return {"id": best["id"], "tolerance": tolerance, "chosen_on": "validation" if on_validation else "search",
            "cost": costs[0]}


def write_front(out: Path, front: Sequence[Record], *, objectives: Sequence[str], model_path: Path | None,
                model_sha256: str, float_values: dict, metric: str, evaluations: int, seed: int,
                extra: dict | None = None, tolerance: float | None = None,
                host_latency: SideBySide | None = None) -> dict:
    """Write ``front.json`` and ``configs/<id>.yaml``; returns the front document.

    ``tolerance``: metric points of drop within which the ``recommended`` point is chosen
    (:func:`recommend`); None: no recommendation. ``host_latency``: the exported files'
    latencies beside the float model's (:func:`qaev.search.remeasure.remeasure_front`),
    written per point and as ``host_latency`` (with how they were measured)."""
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    points = []
    for i, record in enumerate(_order(front, objectives)):
        point_id = f"p{i:02d}"
        save_config(QuantConfig.from_dict(record.config), configs / f"{point_id}.yaml")
        points.append(_point(point_id, record, objectives, host_latency))
    doc = {
        "schema": FRONT_SCHEMA,
        "model": {"path": str(model_path) if model_path else None, "sha256": model_sha256},
        "metric": metric,
        "objectives": [{"name": n, "kind": get_objective(n).kind.value, "unit": get_objective(n).unit}
                       for n in objectives],
        "float": float_values,
        "points": points,
        "recommended": recommend(points, objectives, tolerance),
        "evaluations": evaluations,
        "seed": seed,
        "versions": versions(),
        **(extra or {}),
    }
    if host_latency is not None:
        doc["host_latency"] = _latency_doc(host_latency, host_latency.reference)
    _write_json(out / "front.json", doc)
    return doc


def read_front(out: Path) -> dict:
    """Read and check ``DIR/front.json``."""
    path = Path(out) / "front.json"
    if not path.is_file():
        raise ConfigError(f"{out}: no front.json (is it a finished qaev search directory?)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if doc.get("schema") != FRONT_SCHEMA:
        raise ConfigError(f"{path}: schema {doc.get('schema')!r} is not {FRONT_SCHEMA}")
    return doc
