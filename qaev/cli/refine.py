"""``qaev refine``: rebuild chosen front points with block reconstruction and measure them
again on the run's own splits, beside the points as they were.

Each chosen point's config is rebuilt with ``rounding: block`` on every layer block
reconstruction applies to (quantized Conv/Gemm/MatMul weights on a grid of at most 8 bits;
bias correction there is replaced by the learned shift, and weights are fitted to float
inputs, as block reconstruction fits to quantized ones itself); its size is unchanged. The
calibration data, search split and validation split are the run's (``settings.json``),
and the original config is measured again on the same items, so the two figures pair.
The refined config is written to ``configs/<id>r.yaml`` and the point to ``front.json``
under ``refined`` (``points`` and ``recommended`` stay as the search left them).
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import click

from qaev.config import BlockSettings, QuantConfig, RoundingInputs
from qaev.config_io import load_config, save_config
from qaev.errors import ConfigError, ModelError
from qaev.files import write_atomic
from qaev.model.graph import load_model
from qaev.runtime.lock import RunLock
from qaev.runtime.rundir import read_front

__all__ = ["refine", "refined_config"]


def refined_config(config: QuantConfig, layers, *, block: BlockSettings | None = None) -> QuantConfig:
    """``config`` with ``rounding: block`` on every layer block reconstruction applies to
    (learning with ``block``, default :class:`~qaev.config.BlockSettings`)."""
    from qaev.quantize.rounding.groups import supports_data_aware
    from qaev.quantize.rounding.registry import rounding_entry

    by_name = {layer.name: layer for layer in layers}
    changed = {}
    for name, cfg in config.layers.items():
        eff = cfg.effective()
        if (not cfg.is_float and eff.w_bits is not None and eff.w_bits <= 8 and name in by_name
                and supports_data_aware(by_name[name]) and rounding_entry(eff.rounding).on_grid):
            changed[name] = replace(cfg, rounding="block", bias_correction=False)
    return replace(config, layers={**config.layers, **changed}, rounding_inputs=RoundingInputs.FLOAT,
                   block=block or BlockSettings())


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


def _measure(quantizer, config, evaluators: dict) -> dict:
    model = quantizer.build(config)
    out = {}
    for split, evaluator in evaluators.items():
        value = evaluator.measure(model).value
        out[split] = {"metric": value, "acc_drop": evaluator.drop(value)}
    return out


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--point", "point_id", default=None, show_default="none: give --point or --recommended",
              help="Point id from front.json.")
@click.option("--recommended", is_flag=True, help="The run's recommended point.")
@click.option("--iters", type=click.IntRange(min=0), default=500, show_default=True,
              help="Learning steps per block (time grows with them).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of every random choice of the learning.")
@click.option("--model", type=click.Path(path_type=Path), default=None, show_default="the path front.json names",
              help="Float model, if it moved.")
def refine(run_dir, point_id, recommended, iters, seed, model) -> None:
    """Rebuild a front point with block reconstruction and measure it again (needs PyTorch)."""
    doc = read_front(run_dir)
    pid = _chosen(doc, run_dir, point_id, recommended)
    lock = RunLock(run_dir)  # no search writes the front while it is refined
    try:
        _refine(run_dir, doc, pid, iters=iters, seed=seed, model=model)
    finally:
        lock.release()


def _refine(run_dir: Path, doc: dict, pid: str, *, iters: int, seed: int, model: Path | None) -> None:
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
    original = load_config(Path(run_dir) / point["config"])
    config = refined_config(quantizer.resolve(original), quantizer.layers, block=BlockSettings(iters=iters, seed=seed))
    metric = spec.evaluation.metric or parts.metric
    evaluators = {"search": Evaluator(float_model, parts.eval, metric=metric, threads=threads)}
    if parts.validation is not None:
        evaluators["validation"] = Evaluator(float_model, parts.validation, metric=metric, threads=threads)
    show_learning(config)
    started = time.perf_counter()
    after = _measure(quantizer, config, evaluators)
    seconds = time.perf_counter() - started
    before = _measure(quantizer, original, evaluators)
    rid = f"{pid}r"
    save_config(config, Path(run_dir) / "configs" / f"{rid}.yaml")
    entry = {"id": rid, "from": pid, "config": f"configs/{rid}.yaml", "objectives": point["objectives"],
             "measured": after, "original": before, "seconds": round(seconds, 1)}
    doc["refined"] = [r for r in doc.get("refined", []) if r["id"] != rid] + [entry]
    write_atomic(Path(run_dir) / "front.json", json.dumps(doc, indent=2) + "\n")
    for split in after:
        click.echo(f"{rid} (from {pid}) on the {split} split: {metric} {after[split]['metric']:.2f} "
                   f"(drop {after[split]['acc_drop']:.2f}; as searched {before[split]['acc_drop']:.2f}), measured")
    click.echo(f"wrote {Path(run_dir) / 'configs' / f'{rid}.yaml'} and front.json ({seconds / 60:.1f} min)")
