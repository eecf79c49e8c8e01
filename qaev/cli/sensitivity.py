"""``qaev sensitivity``: per-layer drop and output SQNR when one layer alone is quantized."""
from __future__ import annotations

import hashlib
from pathlib import Path

import click
import numpy as np

from qaev.cli.data import resolve_data
from qaev.cli.options import bit_list, data_options
from qaev.config import ACT_SETTINGS
from qaev.errors import ConfigError
from qaev.evaluation.evaluator import Evaluator
from qaev.files import write_atomic
from qaev.search.problem import QuantizationProblem
from qaev.quantize import Quantizer, cache_dir
from qaev.sensitivity.probes import layer_sensitivity
from qaev.runtime.store import EvaluationStore

__all__ = ["sensitivity", "store_path"]


def _data_hash(dataset) -> str:
    digest = hashlib.sha256()
    for name in sorted(dataset.inputs):
        digest.update(name.encode() + np.ascontiguousarray(dataset.inputs[name]).tobytes())
    if dataset.labels is not None:
        digest.update(np.ascontiguousarray(dataset.labels).tobytes())
    return digest.hexdigest()


def store_path(quantizer: Quantizer, evaluator: Evaluator) -> Path:
    """Where the probes of this model, calibration and evaluation data are memoised:
    ``$QAEV_CACHE/sensitivity/<hash>.jsonl`` (a rerun measures nothing again)."""
    calib = quantizer.stats_path.name if quantizer.stats_path is not None else "no-stats"
    digest = hashlib.sha256("|".join([quantizer.model.sha256, calib, evaluator.metric.name,
                                      _data_hash(evaluator.data)]).encode()).hexdigest()[:20]
    return cache_dir("sensitivity") / f"{digest}.jsonl"


@click.command()
@click.argument("model", required=False, type=click.Path(path_type=Path))
@click.option("--problem", default=None, show_default="digits without MODEL",
              help="A ready-made problem (see `qaev problems`).")
@data_options
@click.option("--bits", default="2,4,8", show_default=True, help="Weight widths to probe (comma list; float allowed).")
@click.option("--act", type=click.Choice(list(ACT_SETTINGS)), default="float", show_default=True,
              help="Activations of the probed layer: float (weight-only) or a8 (also a4, a16, dyn8).")
@click.option("--sqnr-samples", type=int, default=256, show_default=True, help="Samples behind each SQNR.")
@click.option("--out", type=click.Path(path_type=Path), default=None, show_default="not written",
              help="Write the table as JSON here.")
@click.option("--store", type=click.Path(path_type=Path), default=None,
              show_default="a file under the cache's sensitivity/ folder (see `qaev cache`)",
              help="Evaluation memo (JSON lines).")
@click.option("--no-cache", is_flag=True, help="Measure everything again; keep nothing on disk.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON table instead of the text table.")
def sensitivity(model, problem, bits, act, sqnr_samples, out, store, no_cache, as_json, **kwargs) -> None:
    """Rank layers by the metric drop of quantizing each alone (others float)."""
    try:
        widths = bit_list(bits)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("--w-bits", "--bits")) from None
    if not widths:
        raise ConfigError("--bits: give at least one width")
    resolved = resolve_data(model, problem, kwargs)
    float_model, calib, evaluation, metric = resolved.model, resolved.calib, resolved.eval, resolved.metric
    quantizer = Quantizer.calibrated(float_model, calib)
    evaluator = Evaluator(float_model, evaluation, metric=metric)
    path = None if no_cache else (store or store_path(quantizer, evaluator))
    prob = QuantizationProblem(quantizer, evaluator, store=EvaluationStore(path))
    cached = len(prob.store)
    table = layer_sensitivity(prob, bits=widths, act=act, sqnr_samples=sqnr_samples)
    text = table.to_json()
    if out is not None:
        write_atomic(out, text)
    if as_json:
        click.echo(text)
        return
    click.echo(table.format())
    click.echo(f"{prob.n_evaluated} probes measured, {prob.store.hits} from the memo"
               + (f" ({path}, {cached} on disk before)" if path else "")
               + (f"; wrote {out}" if out is not None else ""))
