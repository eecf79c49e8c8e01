"""From data options to calibration and evaluation splits plus a metric."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from qaev.data import (
    ArrayDataset,
    load_digits_split,
    load_feed_folder,
    load_imagenet_folder,
)
from qaev.data.generated import generated_dataset
from qaev.data.locate import resolve_data_path
from qaev.errors import DataError
from qaev.model.graph import FloatModel

__all__ = ["DataOptions", "Task", "load_task", "TASKS", "input_specs"]

TASKS = ("digits", "imagenet", "fidelity")
_DEFAULT_CALIB = 200


@dataclass(frozen=True, kw_only=True)
class DataOptions:
    """Where the data comes from and how it is split.

    Args:
        task: ``digits`` (bundled), ``imagenet`` (folder with ``labels.csv`` and
            ``images/``) or ``fidelity`` (no labels: ``.npy``/``.npz`` feeds or synthetic
            inputs, scored against the float model).
        data: the data folder (imagenet, fidelity); ``$QAEV_DATA``-relative names work.
        calib: calibration samples (default: the bundled split for digits, else 200).
        eval: evaluation samples (default: all that remain).
        seed: seed of the calibration/evaluation split.
        size, crop_pct, mean, std, resample: imagenet preprocessing (pixel units).
        shapes: fidelity: per-input shapes (batch included) for dynamic dims.
        synthetic: fidelity: number of generated samples when no data folder is given.
        metric: overrides the task's default metric.
    """

    task: str = "digits"
    data: Path | None = None
    calib: int | None = None
    eval: int | None = None
    seed: int = 0
    size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    resample: str = "bicubic"
    shapes: dict = field(default_factory=dict)
    synthetic: int = 256
    metric: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise DataError(f"--task: {self.task!r} is not one of {', '.join(TASKS)}")
        for name in ("calib", "eval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise DataError(f"--{name}: must be at least 1, got {value}")


@dataclass(frozen=True)
class Task:
    """Calibration split, evaluation split (disjoint) and the metric to score with."""

    calib: ArrayDataset
    eval: ArrayDataset
    metric: str


def _data_path(options: DataOptions) -> Path:
    if options.data is None:
        raise DataError(f"--task {options.task} needs --data PATH")
    return resolve_data_path(options.data)


def input_specs(model: FloatModel, shapes: dict) -> dict:
    """Per-sample input shapes and dtypes of ``model`` (``shapes`` fills dynamic dims)."""
    import numpy as np
    from onnx import helper

    specs = {}
    for name, value in model.inputs.items():
        tt = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        given = shapes.get(name)
        if given is not None:
            if len(given) != len(dims):
                raise DataError(f"--shape {name}: {len(given)} dims given, the model's input has {len(dims)}")
            dims = list(given)
        unknown = [i for i, d in enumerate(dims[1:], start=1) if not d]
        if unknown:
            raise DataError(f"input {name!r}: dim {unknown[0]} is dynamic; give --shape {name}=1x...")
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.dtype(np.float32)
        specs[name] = (tuple(int(d) for d in dims[1:]), dtype)
    return specs


def _split(data: ArrayDataset, options: DataOptions) -> tuple[ArrayDataset, ArrayDataset]:
    n_calib = options.calib or min(_DEFAULT_CALIB, max(1, len(data) // 4))
    if len(data) < n_calib + 1:
        raise DataError(f"dataset {data.name!r} has {len(data)} samples; need more than --calib {n_calib}")
    return data.split(n_first=n_calib, n_second=options.eval, seed=options.seed)


def load_task(options: DataOptions, model: FloatModel) -> Task:
    """Load and split the data the options describe for ``model``."""
    if options.task == "digits":
        calib, evaluation = load_digits_split("calib"), load_digits_split("test")
        if options.calib:
            calib = calib.head(min(options.calib, len(calib)))
        if options.eval:
            evaluation = evaluation.head(min(options.eval, len(evaluation)))
        return Task(calib, evaluation, options.metric or "top1")
    if options.task == "imagenet":
        names = list(model.inputs)
        if len(names) != 1:
            raise DataError(f"--task imagenet needs a model with one image input; this one has {names}")
        name = names[0]
        data = load_imagenet_folder(
            _data_path(options), input_name=name, size=options.size, crop_pct=options.crop_pct,
            mean=options.mean, std=options.std, resample=options.resample,
        )
        calib, evaluation = _split(data, options)
        return Task(calib, evaluation, options.metric or "top1")
    if options.data is not None:
        data = load_feed_folder(_data_path(options), input_names=list(model.inputs))
    else:
        data = generated_dataset(model, options.shapes, n=options.synthetic, seed=options.seed)
    metric = options.metric or _fidelity_metric(model)
    if options.data is None:
        warnings.warn(f"no --data: calibrating and measuring {metric} against the float model on {len(data)} inputs "
                      "generated from the model's input shapes (floats standard normal, integers 0..9); they say "
                      "little about real inputs", stacklevel=2)
    calib, evaluation = _split(data, options)
    return Task(calib, evaluation, metric)


def _fidelity_metric(model: FloatModel) -> str:
    """Top-1 agreement for a single [N, classes] output, output SQNR (over every output)
    otherwise."""
    if len(model.proto.graph.output) > 1:
        return "sqnr_db"
    out = model.proto.graph.output[0].type.tensor_type
    rank = len(out.shape.dim) if out.HasField("shape") else 0
    return "agreement" if rank == 2 else "sqnr_db"
