"""A search's run directory: settings, the evaluation memo, history, front and configs.

    DIR/settings.json       the run's spec (qaev.search.spec.RunSpec), the model's hash and the
                            data sizes (a resume must match them)
    DIR/evaluations.jsonl   every evaluated candidate, appended as it finishes
    DIR/history.jsonl       one line per generation
    DIR/front.json          the Pareto front (schema ``qaev.front/1``)
    DIR/configs/<id>.yaml   one self-contained config per front point
    DIR/learned/<key>.npz   the block reconstruction of each rebuilt point (``qaev refine``)
"""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from qaev.documents import read_document
from qaev.files import append_line, write_atomic
from qaev.config import QuantConfig
from qaev.config_io import save_config
from qaev.errors import ConfigError
from qaev.evaluation.latency import SideBySide
from qaev.search.front import non_dominated
from qaev.search.objectives import get_objective
from qaev.runtime.lock import LOCK_NAME, RunLock
from qaev.runtime.store import Record

__all__ = ["prepare_run_dir", "RunDirectory", "write_front", "append_history", "read_front", "versions",
           "FRONT_SCHEMA"]

FRONT_SCHEMA = "qaev.front/1"


def versions() -> dict:
    """Versions of the pieces that decide the numbers."""
    import onnx
    import onnxruntime
    import pymoo

    from qaev.version import __version__

    return {"qaev": __version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "pymoo": pymoo.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def _write_json(path: Path, data) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")


class RunDirectory:
    """An open run directory: its path, held by this process (:class:`~qaev.runtime.lock.RunLock`).

    Attributes:
        path: the directory.
        created: whether opening it created the directory (a fresh run).
    """

    def __init__(self, path: Path, lock: RunLock, *, created: bool) -> None:
        self.path, self._lock, self.created = path, lock, created

    def close(self) -> None:
        """Release the directory."""
        self._lock.release()

    def discard(self) -> None:
        """Undo opening a fresh run that never started (bad options): remove what opening
        wrote, and the directory when opening created it; then release it."""
        (self.path / "settings.json").unlink(missing_ok=True)
        self.close()
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        if self.created:
            try:
                self.path.rmdir()
            except OSError:  # something else was put there meanwhile: leave it
                pass


def _contents(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name != LOCK_NAME] if out.is_dir() else []


def _read_settings(path: Path) -> dict:
    try:
        data = read_document(path, what="run settings", fmt="json")
    except ConfigError as exc:
        raise ConfigError(f"--resume: {exc}; it is not a qaev run directory") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--resume: {path} is damaged (not a JSON object)")
    return data


def _check_resume(out: Path, settings: dict) -> None:
    saved = out / "settings.json"
    if not saved.is_file():
        raise ConfigError(f"--resume: {out} holds no settings.json; it is not a qaev run directory")
    old, new = {**ADDED, **_flat(_read_settings(saved))}, _flat(settings)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE
                     and not (k.startswith("data.") and k not in old))  # runs from before data fingerprints
    if changed:
        raise ConfigError(f"--resume: settings differ from the run in {out}: {', '.join(changed)}")


def prepare_run_dir(out: Path, settings: dict, *, resume: bool, force: bool) -> RunDirectory:
    """Create or reopen ``out`` and hold it for this process.

    Raises:
        ConfigError: ``out`` is a file, not writable, in use by another process, not empty
            while neither ``resume`` nor ``force`` is given, or ``resume`` finds different
            settings (the data included: sizes and fingerprints).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out: {out} exists and is not a directory")
    if _contents(out) and not (resume or force):
        raise ConfigError(f"--out: {out} is not empty; pass --resume to continue that run or --force to overwrite")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = RunLock(out)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write to {out} ({exc.strerror or exc})") from None
    handle = RunDirectory(out, lock, created=created)
    try:
        if resume and _contents(out):
            _check_resume(out, settings)
            return handle
        if _contents(out) and not force:  # filled by another process before we held it
            raise ConfigError(f"--out: {out} is not empty; pass --resume to continue that run or --force to overwrite")
        for name in ("evaluations.jsonl", "history.jsonl", "front.json", "settings.json"):
            (out / name).unlink(missing_ok=True)
        _write_json(out / "settings.json", settings)
    except BaseException:
        handle.close() if not created else handle.discard()
        raise
    return handle


#: Settings a resumed run may change (a longer search; whether the end rebuilds the
#: recommended point, or which measured points the front keeps: they change nothing the
#: search measured).
RESUMABLE = ("spec.search.generations", "spec.search.time_minutes", "spec.search.refine", "spec.search.near")
#: Settings added since runs were first written, with the value that ran before they existed
#: (what a run directory that lacks one is taken to have).
ADDED = {"spec.search.predictor": json.dumps(False)}


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
    append_line(out / "history.jsonl", json.dumps(row) + "\n")


def _order(front: Sequence[Record], objectives: Sequence[str]) -> list[Record]:
    return sorted(front, key=lambda r: tuple(r.objectives[n] for n in reversed(objectives)))


def _beaten(front: Sequence[Record], objectives: Sequence[str]) -> set[int]:
    """Indices of the points another point of ``front`` dominates (kept as near the front:
    :meth:`~qaev.evaluation.scoring.Scoring.front`)."""
    if not front:
        return set()
    F = np.array([[float(r.objectives[n]) for n in objectives] for r in front])
    return set(range(len(front))) - set(non_dominated(F).tolist())


def _point(point_id: str, record: Record, objectives: Sequence[str], latency: SideBySide | None,
           sizes: dict | None) -> dict:
    point = {"id": point_id, "key": record.key, "objectives": {n: record.objectives[n] for n in objectives},
             "metric": record.metric, "config": f"configs/{point_id}.yaml"}
    if sizes is not None:
        point["sizes"] = sizes
    if record.drop_se is not None:
        point["drop_se"] = record.drop_se
    if record.validation_drop is not None:
        point["validation"] = {"metric": record.validation_metric, "acc_drop": record.validation_drop,
                               **({} if record.validation_se is None else {"se": record.validation_se})}
    if latency is not None and record.key in latency.ms:
        point["host_latency_ms"] = latency.ms[record.key]
        point["host_speedup"] = latency.speedup(record.key)
    return point


def _latency_doc(latency: SideBySide, reference: str) -> dict:
    return {**latency.settings(), "float_ms": latency.ms[reference],
            "what": (f"median ms of one run of each point's exported file and of the float model, "
                     f"{latency.input or f'batch {latency.batch}'}, {latency.threads} ONNX Runtime thread(s) on this "
                     "host, measured side by "
                     "side in interleaved rounds (points: host_latency_ms, host_speedup = float / point)")}


def recommend(points: Sequence[dict], objectives: Sequence[str], tolerance: float | None) -> dict | None:
    """The point to ship: the one with the least first cost objective (the first objective
    that is not ``acc_drop``) among those within ``tolerance`` metric points of float, judged
    on the validation split where the points carry one (else on the search split). A point
    must also be within it on the search split: a small validation split reads some points
    far better than they are, and one the search measured beyond the tolerance is not
    shipped on such a reading."""
    costs = [n for n in objectives if n != "acc_drop"]
    if tolerance is None or "acc_drop" not in objectives or not costs:
        return None
    on_validation = all("validation" in p for p in points) and bool(points)
    drop = (lambda p: p["validation"]["acc_drop"]) if on_validation else (lambda p: p["objectives"]["acc_drop"])
    within = [p for p in points if drop(p) <= tolerance and p["objectives"]["acc_drop"] <= tolerance]
    if not within:
        return None
    best = min(within, key=lambda p: (p["objectives"][costs[0]], drop(p)))
    return {"id": best["id"], "tolerance": tolerance, "chosen_on": "validation" if on_validation else "search",
            "cost": costs[0]}


def write_front(out: Path, front: Sequence[Record], *, objectives: Sequence[str], model_path: Path | None,
                model_sha256: str, float_values: dict, metric: str, evaluations: int, seed: int,
                extra: dict | None = None, tolerance: float | None = None,
                host_latency: SideBySide | None = None, sizes: dict | None = None) -> dict:
    """Write ``front.json`` and ``configs/<id>.yaml``; returns the front document.

    ``tolerance``: metric points of drop within which the ``recommended`` point is chosen
    (:func:`recommend`); None: no recommendation. ``host_latency``: the exported files'
    latencies beside the float model's (:func:`qaev.search.remeasure.remeasure_front`),
    written per point and as ``host_latency`` (with how they were measured). ``sizes``:
    record key -> the point's ``sizes`` (:meth:`qaev.quantize.footprint.Sizes.to_dict`:
    bit count, file, x smaller)."""
    configs = out / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    points = []
    ordered = _order(front, objectives)
    beaten = _beaten(ordered, objectives)
    for i, record in enumerate(ordered):
        point_id = f"p{i:02d}"
        save_config(QuantConfig.from_dict(record.config), configs / f"{point_id}.yaml")
        points.append(_point(point_id, record, objectives, host_latency, (sizes or {}).get(record.key)))
        if i in beaten:
            points[-1]["near"] = True
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


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_problem(entry, kind: str, index: int, root: Path) -> str | None:
    """What is wrong with the id and config path of front entry ``index`` (``kind``: "point"
    or "refined point"), or None."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not isinstance(entry.get("config"), str):
        return f"{kind} {index} needs an id and a config path"
    if root not in (root / entry["config"]).resolve().parents:
        return f"{kind} {entry['id']}: config path {entry['config']!r} leaves the run directory"
    return None


def _front_problem(doc, run_dir: Path) -> str | None:
    """What is wrong with a front document, or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    if doc.get("schema") != FRONT_SCHEMA:
        return f"schema {doc.get('schema')!r} is not {FRONT_SCHEMA}"
    model = doc.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("sha256"), str) or not isinstance(
            model.get("path"), (str, type(None))):
        return "'model' must hold the model's sha256 and path"
    objectives = doc.get("objectives")
    if not isinstance(objectives, list) or not objectives or not all(
            isinstance(o, dict) and isinstance(o.get("name"), str) for o in objectives):
        return "'objectives' must list the objectives by name"
    names = [o["name"] for o in objectives]
    points = doc.get("points")
    if not isinstance(points, list):
        return "'points' must be a list"
    root = run_dir.resolve()
    for i, point in enumerate(points):
        problem = _entry_problem(point, "point", i, root)
        if problem:
            return problem
        values = point.get("objectives")
        if not isinstance(values, dict) or not all(_number(values.get(n)) for n in names):
            return f"point {point['id']}: objectives {names} must be finite numbers"
        for key in ("metric", "host_latency_ms", "host_speedup"):
            if point.get(key) is not None and not _number(point[key]):
                return f"point {point['id']}: {key} must be a finite number"
    refined = doc.get("refined", [])
    if not isinstance(refined, list):
        return "'refined' must be a list"
    for i, entry in enumerate(refined):
        problem = _entry_problem(entry, "refined point", i, root)
        if problem:
            return problem
    if not isinstance(doc.get("float", {}), dict) or not isinstance(doc.get("metric", ""), str):
        return "'float' must be an object and 'metric' a name"
    return None


def read_front(out: Path) -> dict:
    """Read and check ``DIR/front.json`` (its structure, finite values, config paths inside
    the directory).

    Raises:
        ConfigError: missing, not JSON, or damaged; the message says what is wrong.
    """
    path = Path(out) / "front.json"
    if not path.is_file():
        raise ConfigError(f"{out}: no front.json (is it a finished qaev search directory?)")
    doc = read_document(path, what="front", fmt="json")
    problem = _front_problem(doc, Path(out))
    if problem:
        raise ConfigError(f"{path}: damaged front ({problem})")
    return doc
