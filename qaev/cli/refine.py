"""``qaev refine``: rebuild chosen front points with block reconstruction and measure them
again on the run's own splits, beside the points as they were.

Each chosen point's config is rebuilt with ``rounding: block`` where block reconstruction
applies (:mod:`qaev.runtime.refining`); its size is unchanged. The calibration data, search
split and validation split are the run's (``settings.json``), and the original config is
measured again on the same items, so the two figures pair. The refined config is written to
``configs/<id>r.yaml``, its learned reconstruction to ``learned/`` (an export on another
machine reads it there rather than learning another model) and the point to ``front.json``
under ``refined``; a rebuilt
recommended point is the one ``qaev export RUN --point recommended`` writes unless it measured
worse (:func:`qaev.runtime.refining.record_refined`).
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from qaev.config import BlockSettings
from qaev.config_io import load_config
from qaev.errors import ConfigError, ModelError
from qaev.model.graph import load_model
from qaev.runtime.lock import RunLock
from qaev.runtime.refining import LEARNED_DIR, record_refined, refine_point, refined_config, shipped_text
from qaev.runtime.rundir import read_front

__all__ = ["refine"]


def _parts(run_dir: Path, float_model):
    from qaev.search.build import with_validation
    from qaev.search.spec import RunSpec

    path = Path(run_dir) / "settings.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: refining needs the run's calibration data and it holds no settings.json")
    spec = RunSpec.from_dict(json.loads(path.read_text())["spec"], where=f"{path}: spec")
    parts = with_validation(spec.source.load(), spec)
    if parts.model.sha256 != float_model.sha256:
        raise ModelError(f"{path}: the run's model is not {float_model.path}")
    return spec, parts


def _chosen(doc: dict, run_dir: Path, point_id: str | None, recommended: bool) -> str:
    ids = [p["id"] for p in doc["points"]]
    if recommended == (point_id is not None):
        raise ConfigError("give exactly one of --point ID or --recommended")
    if recommended:
        if not doc.get("recommended"):
            raise ConfigError(f"{run_dir}: no point is recommended; give --point ID (ids: {', '.join(ids) or 'none'})")
        return doc["recommended"]["id"]
    if point_id not in ids:
        raise ConfigError(f"--point: {point_id!r} is not in the front (ids: {', '.join(ids) or 'none'})")
    return point_id


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--point", "point_id", default=None, show_default="none: give --point or --recommended",
              help="Point id from front.json.")
@click.option("--recommended", is_flag=True, help="The run's recommended point.")
@click.option("--iters", type=click.IntRange(min=0), default=500, show_default=True,
              help="Learning steps per block (time grows with them).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of every random choice of the learning.")
@click.option("--learn-scale/--no-learn-scale", default=False, show_default=True,
              help="Learn a gain of each weight scale with the rounding.")
@click.option("--mirror/--no-mirror", default=False, show_default=True,
              help="Learn each block from the calibration images and their mirror images too (image inputs).")
@click.option("--model", type=click.Path(path_type=Path), default=None, show_default="the path front.json names",
              help="Float model, if it moved.")
def refine(run_dir, point_id, recommended, iters, seed, learn_scale, mirror, model) -> None:
    """Rebuild a front point with block reconstruction and measure it again (needs PyTorch)."""
    doc = read_front(run_dir)
    pid = _chosen(doc, run_dir, point_id, recommended)
    lock = RunLock(run_dir)  # no search writes the front while it is refined
    try:
        _refine(run_dir, doc, pid, block=BlockSettings(iters=iters, seed=seed, learn_scale=learn_scale, mirror=mirror),
                model=model)
    finally:
        lock.release()


def _refine(run_dir: Path, doc: dict, pid: str, *, block: BlockSettings, model: Path | None) -> None:
    from qaev.cli.learning import show_learning
    from qaev.evaluation.evaluator import Evaluator
    from qaev.quantize import Quantizer

    point = next(p for p in doc["points"] if p["id"] == pid)
    path = model or (Path(doc["model"]["path"]) if doc["model"].get("path") else None)
    if path is None:
        raise ConfigError("front.json names no model path; pass --model")
    float_model = load_model(path)
    spec, parts = _parts(run_dir, float_model)
    threads = spec.evaluation.threads
    quantizer = Quantizer.calibrated(float_model, parts.calib, threads=threads)
    quantizer.learned_dirs = (Path(run_dir) / LEARNED_DIR,)  # a rebuild the run holds is read, not learned again
    original = load_config(Path(run_dir) / point["config"])
    metric = spec.evaluation.metric or parts.metric
    evaluators = {"search": Evaluator(float_model, parts.eval, metric=metric, threads=threads)}
    if parts.validation is not None:
        evaluators["validation"] = Evaluator(float_model, parts.validation, metric=metric, threads=threads)
    block = replace(block, output_loss=evaluators["search"].metric.output_loss)
    show_learning(refined_config(original, quantizer.layers, block=block))
    refined = refine_point(quantizer, original, evaluators, block=block)
    rid = record_refined(run_dir, doc, point, refined)
    for split, after in refined.after.items():
        click.echo(f"{rid} (from {pid}) on the {split} split: {metric} {after['metric']:.2f} "
                   f"(drop {after['acc_drop']:.2f} ± {after['se']:.2f}; as searched "
                   f"{refined.before[split]['acc_drop']:.2f}), measured")
    click.echo(f"wrote {Path(run_dir) / 'configs' / f'{rid}.yaml'} and front.json "
               f"(learned and built in {refined.seconds / 60:.1f} min)")
    if pid == (doc.get("recommended") or {}).get("id"):
        click.echo(shipped_text(doc, refined, rid))
