"""``qaev export`` and ``qaev problems``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from qaev.documents import read_document
from qaev.cli.options import compact_names_option, output_file
from qaev.cli.written import write_model
from qaev.config_io import load_config
from qaev.errors import ConfigError, ModelError
from qaev.files import write_atomic
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, export_model
from qaev.quantize.footprint import sizes_of
from qaev.runtime.refining import LEARNED_DIR
from qaev.runtime.rundir import read_front

__all__ = ["export", "problems", "quantizer_for"]


def quantizer_for(run_dir: Path, float_model, configs) -> Quantizer:
    """A bare quantizer, or, when a config needs calibration data (data-aware rounding, bias
    correction), the calibrated one the run's recorded spec rebuilds, reading the block
    reconstructions the run keeps (``learned/``) before learning any."""
    if not any(config.needs_data for config in configs):
        return Quantizer(float_model)
    from qaev.search.spec import RunSpec

    path = Path(run_dir) / "settings.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: these points need calibration data and the run holds no settings.json")
    settings = read_document(path, what="run settings", fmt="json")
    if not isinstance(settings, dict) or not isinstance(settings.get("spec"), dict):
        raise ConfigError(f"{path}: damaged run settings (no spec)")
    spec = RunSpec.from_dict(settings["spec"], where=f"{path}: spec")
    parts = spec.source.load()
    if parts.model.sha256 != float_model.sha256:
        raise ModelError(f"{path}: the run's model is not {float_model.path}")
    quantizer = Quantizer.calibrated(float_model, parts.calib, threads=spec.evaluation.threads)
    quantizer.learned_dirs = (Path(run_dir) / LEARNED_DIR,)  # the run's learned models, as they were measured
    return quantizer


def _model_for(doc: dict, model: Path | None) -> Path:
    path = model or (Path(doc["model"]["path"]) if doc["model"].get("path") else None)
    if path is None:
        raise ConfigError("front.json names no model path; pass --model")
    return path


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--point", "point_id", default=None, show_default="none: give --point or --all",
              help="Point id from front.json (a front point, or a refined one such as p00r from `qaev refine`), or "
                   "`recommended` (the smallest point within tolerance on validation; its block-reconstruction "
                   "rebuild where the run or `qaev refine` made one that did not measure worse).")
@click.option("--all", "all_points", is_flag=True, help="Export every front point to RUN_DIR/models/.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None, callback=output_file,
              show_default="RUN_DIR/models/ID.onnx", help="Output file (with --point).")
@click.option("--model", type=click.Path(path_type=Path), default=None, show_default="the path front.json names",
              help="Float model, if it moved.")
@click.option("--format", "fmt", type=click.Choice(["onnx", "ort-overrides"]), default="onnx", show_default=True,
              help="onnx: the quantized model; ort-overrides: ONNX Runtime TensorQuantOverrides JSON.")
@compact_names_option
def export(run_dir, point_id, all_points, out, model, fmt, compact_names) -> None:
    """Write the deployable ONNX model (or ORT overrides) of front points."""
    doc = read_front(run_dir)
    points = {p["id"]: p for p in doc["points"]}
    refined = {r["id"]: r for r in doc.get("refined", [])}
    if point_id == "recommended":
        if not doc.get("recommended"):
            raise ConfigError(f"{run_dir}: no point is recommended (none is within the run's tolerance); "
                              f"give --point ID (ids: {', '.join(points) or 'none'})")
        point_id = doc["recommended"].get("refined") or doc["recommended"]["id"]
    if point_id in refined and point_id not in points:
        points[point_id] = refined[point_id]
    if all_points == (point_id is not None):
        raise ConfigError("give exactly one of --point ID or --all")
    if point_id is not None and point_id not in points:
        ids = ", ".join([*points, *refined]) or "none"
        raise ConfigError(f"--point: {point_id!r} is not in the front (ids: {ids})")
    float_model = load_model(_model_for(doc, model))
    if float_model.sha256 != doc["model"]["sha256"]:
        raise ModelError(f"{float_model.path}: sha256 differs from the model this front was searched on")
    chosen = list(points) if all_points else [point_id]
    configs = {pid: load_config(Path(run_dir) / points[pid]["config"]) for pid in chosen}
    quantizer = quantizer_for(run_dir, float_model, configs.values())
    for pid in chosen:
        suffix = ".onnx" if fmt == "onnx" else ".ort-overrides.json"
        target = out if (out and not all_points) else Path(run_dir) / "models" / f"{pid}{suffix}"
        if fmt == "ort-overrides":
            _write_overrides(quantizer, configs[pid], pid, target)
            continue
        size = write_model(export_model(quantizer, configs[pid], compact=compact_names), target,
                           reference=float_model)
        sizes = sizes_of(quantizer.layers, configs[pid], float_model.proto, file_bytes=size)
        click.echo(f"wrote {target} ({sizes.text()})")


def _write_overrides(quantizer, config, pid: str, target: Path) -> None:
    from qaev.interop_ort import to_tensor_quant_overrides

    try:
        overrides = to_tensor_quant_overrides(config, quantizer)
    except ConfigError as exc:
        raise ConfigError(f"--point {pid}: {exc}") from None
    write_atomic(target, json.dumps(overrides, indent=2) + "\n")
    floats = [layer.name for layer in quantizer.layers if config.layer(layer.name) is None]
    click.echo(f"wrote {target} (TensorQuantOverrides for {len(overrides)} tensors; load it with "
               "qaev.interop_ort.load_overrides)")
    if floats:
        click.echo(f"  {len(floats)} layers stay float: pass quantize_static nodes_to_exclude={floats!r}")


@click.command()
def problems() -> None:
    """List the ready-made problems."""
    from qaev.problems import list_problems

    for name, description in list_problems():
        click.echo(f"{name:26s} {description}")
