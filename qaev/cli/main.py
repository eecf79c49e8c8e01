"""The ``qaev`` command line."""
from __future__ import annotations

import errno
import json
import sys
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

import click
import onnx

from qaev.cli import notes, signals
from qaev.cli.helptext import show_flag_defaults
from qaev.cli.stages import stage
from qaev.cli.data import resolve_data
from qaev.cli.learning import show_learning
from qaev.cli.written import write_model
from qaev.cli.options import (CALIBRATION_CHOICE, compact_names_option, data_options, data_options_from,
                              layer_config_from, nbits_accuracy_option, output_file)
from qaev.config import BlockSettings, CalibMethod, RoundingInputs, ScaleRule
from qaev.config_io import load_config, load_layer_settings, save_config
from qaev.data import digits_model_path
from qaev.errors import ConfigError, DataError, Interrupted, QaevError
from qaev.evaluation.evaluator import Evaluator, get_metric
from qaev.model.graph import FloatModel, load_model, read_model_file
from qaev.quantize.footprint import sizes_of
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.rounding.registry import ROUNDINGS
from qaev.search.space import set_apart
from qaev.data.tasks import load_task

__all__ = ["main", "cli"]


def _model_or_default(model: Path | None) -> tuple[Path, bool]:
    if model is None:
        return digits_model_path(), True
    return model, False




@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """qaev: per-layer mixed-precision quantization of ONNX models, measured with ONNX Runtime."""
    ctx.ensure_object(dict)["debug"] = debug


@cli.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--problem", default=None, show_default="none: MODEL, or the bundled digits model without one",
              help="A ready-made problem instead of MODEL (see `qaev problems`).")
@click.option("--w-bits", default="8", show_default=True, help="Weight bits: 2, 3, 4, 6, 8, 16 or float.")
@click.option("--a-bits", default="8", show_default=True, help="Activations: 4, 8, 16, dynamic or float.")
@click.option("--per-channel/--per-tensor", default=False, show_default=True, help="Weight scale granularity.")
@click.option("--block", type=click.Choice(["32", "64", "128"]), default=None,
              show_default="none: as --per-channel says",
              help="Block-wise weight scales (MatMul/Gemm/Gather; others per-channel).")
@click.option("--asymmetric", is_flag=True, help="Asymmetric weight grids.")
@click.option("--calibration", type=CALIBRATION_CHOICE, default="minmax", show_default=True,
              help="How activation ranges are taken from the calibration data.")
@click.option("--pow2-scales", is_flag=True, help="Round scales up to powers of two.")
@click.option("--rounding", type=click.Choice(list(ROUNDINGS)), default="nearest", show_default=True,
              help="Weight rounding: nearest, gptq (second-order, from calibration data), codebook "
                   "(2-bit embedding tables as 256 learned 4-weight vectors; other layers: nearest), adaround "
                   "(up/down learned per layer) or block (rounding and activation steps learned block by block); "
                   "adaround and block need pip install 'qaev[torch]'.")
@click.option("--block-iters", type=click.IntRange(min=0), default=500, show_default=True,
              help="--rounding block: learning steps per block (time grows with them); kept in the config.")
@click.option("--block-seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="--rounding block: seed of every random choice of the learning; kept in the config.")
@click.option("--block-learn-scale/--no-block-learn-scale", default=False, show_default=True,
              help="--rounding block: learn a gain of each weight scale with the rounding; kept in the config.")
@click.option("--block-mirror/--no-block-mirror", default=False, show_default=True,
              help="--rounding block: learn each block from the calibration images and their mirror images too "
                   "(image inputs); kept in the config.")
@click.option("--bias-correction", is_flag=True, help="Correct biases for the mean weight-quantization error.")
@click.option("--weight-range", type=click.Choice(["minmax", "mse"]), default="minmax", show_default=True,
              help="Weight grid range per scale group: min/max, or clipped to the least squared error.")
@click.option("--rounding-inputs", type=click.Choice(["float", "quantized"]), default="float", show_default=True,
              help="Fit weights to the float model's layer inputs, or (quantized) fit each layer in graph order "
                   "to the float outputs from the inputs the quantized layers before it produce; one pass over "
                   "the calibration data per layer.")
@click.option("--exclude", multiple=True, show_default="none", help="Keep these layers float (name or re:REGEX); "
              "repeatable.")
@click.option("--freeze", type=click.Path(path_type=Path), default=None, show_default="none",
              help="YAML/JSON file mapping layer selectors (name or re:REGEX) to their own settings, e.g. "
                   "'re:word_embeddings: {w_bits: 2, act: float, rounding: codebook}'; the rest take the uniform one.")
@nbits_accuracy_option
@data_options
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, callback=output_file,
              help="Output .onnx.")
@compact_names_option
@click.option("--save-config", "save_to", type=click.Path(path_type=Path), default=None, show_default="not written",
              help="Write the config (YAML/JSON).")
@click.option("--no-eval", is_flag=True, help="Skip measuring the result.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def quantize(model, problem, w_bits, a_bits, per_channel, block, asymmetric, calibration, pow2_scales, rounding,
             block_iters, block_seed, block_learn_scale, block_mirror, bias_correction, weight_range, rounding_inputs,
             exclude, freeze, nbits_accuracy,
             out, compact_names, save_to, no_eval, as_json, **kwargs) -> None:
    """Uniform quantization of every layer (the one-shot baseline); --exclude and --freeze
    set some layers apart."""
    resolved = resolve_data(model, problem, kwargs)
    float_model = resolved.model
    path = float_model.path
    layer_cfg = layer_config_from(w_bits=w_bits, a_bits=a_bits, per_channel=per_channel,
                                  block=int(block) if block else None, asymmetric=asymmetric)
    layer_cfg = replace(layer_cfg, rounding=rounding, bias_correction=bias_correction, weight_range=weight_range)
    with stage(f"calibrating on {len(resolved.calib)} samples"):
        quantizer = Quantizer.calibrated(float_model, resolved.calib)
    config = uniform_config(quantizer.layers, layer_cfg, calibration=CalibMethod(calibration),
                            scale_rule=ScaleRule.POW2 if pow2_scales else ScaleRule.FLOAT)
    config = replace(config, rounding_inputs=RoundingInputs(rounding_inputs), nbits_accuracy=nbits_accuracy,
                     block=BlockSettings(iters=block_iters, seed=block_seed,
                                         output_loss=get_metric(resolved.metric).output_loss,
                                         learn_scale=block_learn_scale, mirror=block_mirror))
    config = set_apart(config, quantizer.layers, exclude=exclude,
                       frozen=load_layer_settings(freeze) if freeze is not None else None)
    config = quantizer.resolve(config)
    show_learning(config)
    first = next(iter(resolved.calib.batches(batch_size=float_model.fixed_batch or 1)))
    with stage(f"building and writing {out}"):
        size = write_model(export_model(quantizer, config, compact=compact_names), out, reference=float_model,
                           sample=first)
    sizes = sizes_of(quantizer.layers, config, float_model.proto, file_bytes=size)
    summary = {"model": str(path), "out": str(out), "bytes": size, "size_mb": sizes.bit_count_mb,
               "file_mb": sizes.file_mb, "x_smaller": round(sizes.x_smaller, 4),
               "float_bytes": path.stat().st_size if path else None, "layers": len(config.layers)}
    if save_to:
        save_config(config, save_to)
        summary["config"] = str(save_to)
    if not no_eval:
        with stage(f"measuring the float and the quantized model on {len(resolved.held_out)} samples"):
            evaluator = Evaluator(float_model, resolved.held_out, metric=resolved.metric)
            measured = evaluator.measure(quantizer.build(config), keep_outputs=True)
            summary.update(metric=resolved.metric, value=measured.value, float=evaluator.float_value, n=measured.n,
                           drop=evaluator.drop(measured.value),
                           drop_se=evaluator.head_drop(measured.outputs)[1])  # paired with float, same items
        also = evaluator.companions(measured.outputs)  # metrics of the same rows: bits per byte beside perplexity
        if also:
            summary["also"] = also
    if as_json:
        click.echo(json.dumps(summary))
        return
    weightless = sum(1 for layer in quantizer.layers if not layer.has_weight and layer.name not in config.layers)
    note = f"; {weightless} layers without weights keep float activations" if weightless else ""
    click.echo(f"wrote {out} ({sizes.text()}; "
               f"{len(config.layers)} of {len(quantizer.layers)} layers quantized{note})")
    if save_to:
        click.echo(f"wrote config {save_to}")
    if "value" in summary:
        unit = " % of float" if get_metric(resolved.metric).relative else ""
        others = "".join(f"; {name} {value:.4f}" for name, value in summary.get("also", {}).items())
        click.echo(f"{resolved.metric}: {summary['value']:.2f} (float {summary['float']:.2f}, "
                   f"drop {summary['drop']:.2f}{unit} ± {summary['drop_se']:.2f} paired s.e., n={summary['n']}, "
                   f"measured{others})")


@cli.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--problem", default=None, show_default="none: MODEL",
              help="The ready-made problem whose model (and data) the config is for.")
@data_options
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, callback=output_file,
              help="Output .onnx.")
@click.option("--learned", "learned_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              show_default="the cache only",
              help="A folder of learned block reconstructions (a run directory's learned/) read before the "
                   "cache, so a config with rounding: block rebuilds the model they hold instead of learning "
                   "it again (a learned model depends on the machine's arithmetic). Repeatable.")
@compact_names_option
def apply(config: Path, model: Path | None, problem: str | None, out: Path, compact_names: bool,
          learned_dirs: tuple[Path, ...], **kwargs) -> None:
    """Rebuild the quantized model a CONFIG describes for MODEL (or --problem's model).

    No data is needed unless the config rounds weights with GPTQ or corrects biases: then
    give the calibration data it was built with (--problem with the same --calib and --seed,
    or --task/--data). A config with rounding: block learns again unless --learned names
    a folder that holds what was learned for it."""
    cfg = load_config(config)
    if (model is None) == (problem is None):
        raise ConfigError("give exactly one of MODEL or --problem")
    for folder in learned_dirs:
        if not folder.is_dir():
            raise ConfigError(f"--learned {folder}: no such folder")
    if not cfg.needs_data:
        if model is None:
            from qaev.problems import problem_model_path

            model = problem_model_path(problem)
        float_model = load_model(model)
        quantizer = Quantizer(float_model)
    elif problem is None and kwargs["task"] is None and kwargs["data"] is None:
        raise ConfigError(f"{config}: its layers round weights with calibration data (gptq, adaround, block "
                          "or bias correction); give the data it was built with: --problem NAME (same "
                          "--calib/--seed) or --task/--data")
    else:
        resolved = resolve_data(model, problem, kwargs)
        quantizer = Quantizer.calibrated(resolved.model, resolved.calib)
    quantizer.learned_dirs = tuple(learned_dirs)
    show_learning(cfg)
    size = write_model(export_model(quantizer, cfg, compact=compact_names), out, reference=quantizer.model)
    click.echo(f"wrote {out} ({sizes_of(quantizer.layers, cfg, quantizer.model.proto, file_bytes=size).text()})")


def _raw_model(path: Path) -> onnx.ModelProto:
    return read_model_file(path)


@cli.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--problem", default=None, show_default="none: MODEL's own data options",
              help="Measure on this problem's data (MODEL defaults to its float model).")
@data_options
@click.option("--reference", type=click.Path(path_type=Path), default=None, show_default="MODEL itself",
              help="Float model for label-free metrics.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--latency", "latency_batch", type=int, default=None, metavar="B", show_default="not measured",
              help="Also measure host latency: median ms of one run on the first B samples (1 ORT thread).")
def evaluate(model, problem, reference, as_json, latency_batch, **kwargs) -> None:
    """Measure MODEL (float or quantized) on the evaluation split (with --problem: on the
    problem's held-out test split, or its whole data set when it has none)."""
    if problem is not None:
        resolved = resolve_data(None, problem, kwargs)
        path = model or resolved.model.path
        evaluator = Evaluator(load_model(reference) if reference else resolved.model, resolved.reference_data,
                              metric=resolved.metric)
        _report_measure(evaluator, _raw_model(path), path, as_json, latency_batch, paired=True)
        return
    path, bundled = _model_or_default(model)
    bundled = bundled or path.resolve() == digits_model_path().resolve()
    options = data_options_from(kwargs, bundled=bundled)
    raw = _raw_model(path)
    if reference is not None:
        ref = load_model(reference)
    elif bundled:
        ref = load_model(digits_model_path())
    else:  # labelled metrics need no float reference: use MODEL itself for its input names
        ref = FloatModel(proto=raw, path=path, sha256="", opset=0)
    task = load_task(options, ref)
    if reference is None and not bundled and task.metric in ("agreement", "kl", "sqnr_db"):
        raise DataError(f"metric {task.metric!r} compares against the float model: give --reference FLOAT.onnx")
    _report_measure(Evaluator(ref, task.eval, metric=task.metric), raw, path, as_json, latency_batch,
                    paired=reference is not None or bundled)


def _report_measure(evaluator: Evaluator, raw: onnx.ModelProto, path: Path, as_json: bool,
                    latency_batch: int | None = None, *, paired: bool = False) -> None:
    """Print MODEL's metric (``paired``: and its drop against the evaluator's float model
    with the paired standard error on the same items)."""
    with stage(f"measuring {path} on {len(evaluator.data)} samples"):
        measured = evaluator.measure(raw.SerializeToString(), keep_outputs=True)
    metric = evaluator.metric.name
    also = evaluator.companions(measured.outputs)
    result = {"metric": metric, "value": measured.value, "n": measured.n, "model": str(path),
              "inference_s": round(measured.inference_s, 4), **({"also": also} if also else {})}
    if paired:
        result["drop"], result["drop_se"] = evaluator.drop(measured.value), evaluator.head_drop(measured.outputs)[1]
    if latency_batch is not None:
        from qaev.evaluation.latency import host_latency_ms

        if latency_batch < 1:
            raise click.BadParameter(f"expected a batch of at least 1, got {latency_batch}", param_hint="--latency")
        feed = next(iter(evaluator.data.batches(batch_size=latency_batch)))
        result["host_latency_ms"] = host_latency_ms(raw, feed, repeats=30, warmup=3)
        result["latency_batch"] = latency_batch
    if as_json:
        click.echo(json.dumps(result))
    else:
        latency = (f"; host latency {result['host_latency_ms']:.2f} ms (batch {latency_batch}, measured)"
                   if latency_batch is not None else "")
        others = "".join(f"  {name}: {value:.4f}" for name, value in also.items())
        drop = (f"; drop {result['drop']:.2f} ± {result['drop_se']:.2f} against float on the same items"
                if paired else "")
        click.echo(f"{metric}: {measured.value:.4f}{others}  (n={measured.n}, measured on {path}{drop}){latency}")


def _register() -> None:
    from qaev.cli.cache import cache
    from qaev.cli.hardware import hardware
    from qaev.cli.report import report
    from qaev.cli.export import export, problems
    from qaev.cli.refine import refine
    from qaev.cli.search import search
    from qaev.cli.sensitivity import sensitivity

    for command in (search, export, refine, report, sensitivity, problems, hardware, cache):
        cli.add_command(command)
    show_flag_defaults(cli)


_register()


#: Errors of the file system a user can act on (a full disk, a read-only folder, a file in
#: the way): one line naming the path and exit 2, like bad input.
_FILE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                          errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EMFILE})


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors print one line and exit 2; ``--debug`` shows tracebacks;
    Ctrl-C exits 130 and SIGTERM 143, a search writing the front of what it finished first."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    if not debug:
        warnings.showwarning = notes.show
        notes.hold()
    previous = signals.install()
    try:
        return _run(args, debug)
    finally:
        signals.restore(previous)


def _run(args: list[str], debug: bool) -> int:
    try:
        code = cli.main(args=args, prog_name="qaev", standalone_mode=False)
        notes.flush()
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        notes.flush()
        return exc.exit_code
    except click.ClickException as exc:
        notes.drop()
        exc.show()
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        notes.flush()
        click.echo("qaev: interrupted", err=True)
        return signals.exit_code()
    except QaevError as exc:
        notes.drop() if not isinstance(exc, Interrupted) else notes.flush()
        if debug:
            traceback.print_exc()
        click.echo(f"qaev: {'interrupted' if isinstance(exc, Interrupted) else 'error'}: {' '.join(str(exc).split())}",
                   err=True)
        return signals.exit_code() if isinstance(exc, Interrupted) else exc.exit_code
    except OSError as exc:
        if exc.errno not in _FILE_ERRORS:
            raise
        notes.drop()
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"qaev: error: {where}{exc.strerror or exc}", err=True)
        return 2
    except Exception as exc:  # a bug, not bad input: say so in one line unless --debug
        notes.drop()
        if debug:
            raise
        click.echo(f"qaev: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                   err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
