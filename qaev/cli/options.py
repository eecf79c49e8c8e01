"""Shared click options: data options and the bit/scheme options of one-shot quantization."""
from __future__ import annotations

import functools
from pathlib import Path

import click

from qaev.config import WEIGHT_BITS, ActMode, CalibMethod, Granularity, LayerConfig
from qaev.errors import ConfigError
from qaev.data.tasks import TASKS, DataOptions

__all__ = ["data_options", "data_options_from", "parse_shape", "layer_config_from", "csv_list", "bit_list",
           "compact_names_option", "nbits_accuracy_option", "output_file"]


def csv_list(text: str | None) -> list[str]:
    """Comma-separated tokens, stripped, empty ones dropped."""
    return [t.strip() for t in text.split(",") if t.strip()] if text else []


def bit_list(text: str) -> list[int | None]:
    """Weight bit widths from ``"2,4,8,float"`` (``float`` = None)."""
    out = []
    for token in csv_list(text):
        if token == "float":
            out.append(None)
        elif token.isdigit():
            out.append(int(token))
        else:
            raise ConfigError(f"--w-bits: {token!r} is not a bit width (2, 3, 4, 6, 8, 16 or float)")
    return out


def _triple(text: str, name: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected three comma-separated numbers, got {text!r}", param_hint=name) from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise click.BadParameter(f"expected one or three numbers, got {text!r}", param_hint=name)
    return values


def parse_shape(values: tuple[str, ...]) -> dict[str, list[int]]:
    """``name=1x3x224x224`` pairs to a dict of shapes."""
    shapes = {}
    for item in values:
        name, sep, dims = item.partition("=")
        try:
            shapes[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            sep = ""
        if not sep or not name:
            raise click.BadParameter(f"expected NAME=1x3x224x224, got {item!r}", param_hint="--shape")
    return shapes


def data_options(func):
    """Decorate a command with ``--task --data --calib --eval --seed`` and preprocessing."""
    options = [
        click.option("--task", type=click.Choice(TASKS), default=None,
                     show_default="digits for the bundled model, else fidelity",
                     help="Data kind: digits (bundled), imagenet (a folder with labels.csv and images/) or fidelity "
                          "(no labels: .npy/.npz feeds, scored against the float model)."),
        click.option("--data", type=click.Path(path_type=Path), default=None,
                     show_default="none: the bundled digits, or inputs generated from the model's shapes",
                     help="Data folder ($QAEV_DATA-relative names work)."),
        click.option("--calib", type=int, default=None,
                     show_default="digits: its calibration split; else 200, at most a quarter of the data",
                     help="Calibration samples."),
        click.option("--eval", "eval_n", type=int, default=None, show_default="all that remain",
                     help="Evaluation samples."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data split."),
        click.option("--size", type=int, default=224, show_default=True, help="imagenet: input resolution."),
        click.option("--crop-pct", type=float, default=0.875, show_default=True, help="imagenet: centre crop."),
        click.option("--mean", default="127", show_default=True, help="imagenet: mean (pixel units), 1 or 3 values."),
        click.option("--std", default="128", show_default=True, help="imagenet: std (pixel units), 1 or 3 values."),
        click.option("--resample", type=click.Choice(["bicubic", "bilinear", "nearest", "lanczos"]),
                     default="bicubic", show_default=True, help="imagenet: resize filter."),
        click.option("--shape", "shapes", multiple=True, show_default="the model's own shapes",
                     help="fidelity: NAME=1x3x224x224 for dynamic dims; repeatable."),
        click.option("--metric", default=None,
                     show_default="top1 with labels; else agreement for one [N, classes] output, sqnr_db otherwise",
                     help="top1, top5, agreement, kl, sqnr_db, spearman, perplexity or bits_per_byte."),
    ]
    return functools.reduce(lambda f, opt: opt(f), reversed(options), func)


def data_options_from(kwargs: dict, *, bundled: bool) -> DataOptions:
    """Pop the data options out of a command's kwargs."""
    task = kwargs.pop("task") or ("digits" if bundled else "fidelity")
    return DataOptions(
        task=task, data=kwargs.pop("data"), calib=kwargs.pop("calib"), eval=kwargs.pop("eval_n"),
        seed=kwargs.pop("seed"), size=kwargs.pop("size"), crop_pct=kwargs.pop("crop_pct"),
        mean=_triple(kwargs.pop("mean"), "--mean"), std=_triple(kwargs.pop("std"), "--std"),
        resample=kwargs.pop("resample"), shapes=parse_shape(kwargs.pop("shapes")), metric=kwargs.pop("metric"),
    )


def _weight_bits(text: str) -> int | None:
    if text == "float":
        return None
    try:
        bits = int(text)
    except ValueError:
        bits = -1
    if bits not in WEIGHT_BITS:
        raise ConfigError(f"--w-bits: {text!r} is not one of 2, 3, 4, 6, 8, 16, float")
    return bits


def layer_config_from(*, w_bits: str, a_bits: str, per_channel: bool, block: int | None,
                      asymmetric: bool) -> LayerConfig:
    """The uniform :class:`LayerConfig` of ``qaev quantize``'s options."""
    if a_bits in ("dynamic", "float"):
        act, bits = ActMode(a_bits), 8
    else:
        act, bits = ActMode.STATIC, int(a_bits)
    if block:
        granularity = Granularity(f"block{block}")
    else:
        granularity = Granularity.PER_CHANNEL if per_channel else Granularity.PER_TENSOR
    return LayerConfig(w_bits=_weight_bits(w_bits), a_bits=bits, act=act, granularity=granularity,
                       symmetric=not asymmetric)


CALIBRATION_CHOICE = click.Choice([m.value for m in CalibMethod])

#: ``--compact-names`` of every command that writes a model.
compact_names_option = click.option(
    "--compact-names", is_flag=True,
    help="Short internal tensor names and blank node names in the written file (smaller; same outputs).")

#: ``--nbits-accuracy`` of the commands that build block-wise weight-only models.
nbits_accuracy_option = click.option(
    "--nbits-accuracy", type=click.IntRange(0, 4), default=0, show_default=True,
    help="ONNX Runtime accuracy_level of block-wise weight-only MatMuls of <= 4 bits between float activations: "
         "0 (default) folds their "
         "weights to float when the session loads; 1-4 run them as MatMulNBits at that level (4 quantizes their "
         "inputs to int8 per block inside the kernel: faster per decoded token on x86 CPUs, a small added error). "
         "Evaluated and exported alike.")


def output_file(ctx, param, value: Path | None) -> Path | None:
    """Click callback of ``-o``: a file, not a directory (checked before any work)."""
    if value is not None and value.is_dir():
        raise click.BadParameter(f"{value} is a directory; give a file name", param_hint="-o")
    return value
