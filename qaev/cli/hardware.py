"""``qaev hardware``: list and show cost tables, estimate a config's cost on a target."""
from __future__ import annotations

import json
from pathlib import Path

import click

from qaev.cli.options import output_file
from qaev.documents import read_document
from qaev.files import write_atomic
from qaev.config import QuantConfig
from qaev.hardware import legal_pairs, list_tables, load_table
from qaev.quantize.sizes import estimate_cost
from qaev.hardware.pairs import all_pairs

__all__ = ["hardware"]


def _table(target: str):
    return load_table(target)  # a QaevError is one "qaev: error" line, as in every command


@click.group("hardware")
def hardware() -> None:
    """Hardware cost tables; every latency and energy figure is an estimate."""


@hardware.command("list")
def list_command() -> None:
    """List the bundled hardware tables."""
    for name in list_tables():
        click.echo(f"{name:18s} {load_table(name).device}")


def _q(q) -> str:
    return f"{q.value:.4g} {q.unit}"


@hardware.command("show")
@click.argument("target")
def show_command(target: str) -> None:
    """Show a table (bundled name or YAML path) with units and sources."""
    t = _table(target)
    click.echo(f"{t.name} ({t.kind}): {t.device}")
    click.echo(t.description)
    click.echo(f"float format: {t.float_format}; "
               f"integer weights run as float are dequantized at {t.weight_decompression}")
    click.echo("\nnative pairs:")
    for key, rate in t.peak_macs_per_s.items():
        energy = t.energy_per_mac[key]
        click.echo(f"  {key:14s} {_q(rate):>18s}  {_q(energy):>14s}")
        click.echo(f"  {'':14s} rate: {rate.source}")
        click.echo(f"  {'':14s} energy: {energy.source}")
    if t.nbits_kernel is not None:
        k = t.nbits_kernel
        click.echo(f"\nfused block-wise kernel (MatMulNBits, weights up to {k.max_bits} bits, "
                   "with --nbits-accuracy 1-4):")
        click.echo(f"  {'':14s} {_q(k.peak_macs_per_s):>18s}  {_q(k.energy_per_mac):>14s}")
        click.echo(f"  {'':14s} rate: {k.peak_macs_per_s.source}")
        click.echo(f"  {'':14s} energy: {k.energy_per_mac.source}")
    click.echo("\nscalars:")
    for field in ("memory_bandwidth", "energy_per_byte", "layer_overhead", "act_conversion_time",
                  "act_conversion_energy", "weight_conversion_time", "weight_conversion_energy"):
        q = getattr(t, field)
        click.echo(f"  {field:26s} {_q(q):>22s}  ({q.source})")
    click.echo("\nfallbacks (requested -> executed):")
    for pair in all_pairs():
        chain = t.resolve(pair)
        if len(chain) > 1:
            click.echo(f"  {str(pair):14s} -> {' -> '.join(map(str, chain[1:]))}")
    click.echo(f"\nlegal (representable) pairs: {', '.join(sorted(legal_pairs(t)))}")
    for op, note in t.op_notes.items():
        click.echo(f"note [{op}]: {note}")
    for note in t.notes:
        click.echo(f"note: {note}")


def _load_inputs(config_path: str, model_path: str):
    from qaev.model.graph import load_model
    from qaev.model.layers import find_layers

    data = read_document(config_path, what="config")
    config = QuantConfig.from_dict(data, where=config_path)
    return config, find_layers(load_model(model_path))


@hardware.command("estimate")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(exists=True, dir_okay=False))
@click.option("--hardware", "target", required=True, help="bundled table name or YAML path")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="samples per run")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def estimate_command(config_path: str, model_path: str, target: str, batch: int, as_json: bool) -> None:
    """Estimate latency, energy, size and peak memory of CONFIG applied to MODEL.onnx."""
    table = _table(target)
    config, layers = _load_inputs(config_path, model_path)
    report = estimate_cost(layers, config, table, batch=batch)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    click.echo(f"ESTIMATED cost on {report.target} ({report.device}), batch {batch}: "
               "analytic estimates, not measurements")
    head = (f"{'layer':28s} {'op':9s} {'wanted':13s} {'executed':13s} {'MMAC':>9s} {'weight kB':>10s} "
            f"{'moved kB':>10s} {'bound':7s} {'est us':>9s} {'est uJ':>9s}")
    click.echo(head)
    click.echo("-" * len(head))
    for r in report.rows:
        mark = "" if r.native else "*"
        click.echo(
            f"{r.name[:28]:28s} {r.op_type[:9]:9s} {r.wanted:13s} {r.executed + mark:13s} {r.macs / 1e6:9.2f} "
            f"{r.weight_bytes / 1e3:10.1f} {(r.weight_bytes_moved + r.act_bytes) / 1e3:10.1f} {r.bound:7s} "
            f"{r.est_latency_s * 1e6:9.2f} {r.est_energy_j * 1e6:9.3f}"
        )
    click.echo("-" * len(head))
    click.echo(f"est_latency_ms  {report.est_latency_ms:.4f}  (estimate)")
    click.echo(f"est_energy_mj   {report.est_energy_mj:.4f}  (estimate)")
    click.echo(f"size_mb         {report.size_mb:.4f}  (weights by bit count, exact)")
    click.echo(f"peak_memory_mb  {report.peak_memory_mb:.4f}  (estimate)")
    if report.fallbacks:
        click.echo(f"* {len(report.fallbacks)} layer(s) not native on {report.target}: run as the executed pair")
    for warning in report.warnings:
        click.echo(f"warning: {warning}")


@hardware.command("fit-host")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=Path("host-local.yaml"), show_default=True,
              callback=output_file, help="The table file to write.")
@click.option("--name", default="host-local", show_default=True, help="The new table's name.")
@click.option("--problem", type=click.Choice(["efficientnet-lite0", "digits"]), default="efficientnet-lite0",
              show_default=True, help="Whose model to time (efficientnet-lite0 falls back to digits when its "
                                      "weights are not installed).")
@click.option("--model", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              show_default="the problem's", help="An ONNX file to time instead.")
@click.option("--configs", type=click.IntRange(min=4), default=40, show_default=True,
              help="Random per-layer configs to time (the defaults took 47 s on EfficientNet-Lite0 on a 2-vCPU "
                   "machine).")
@click.option("--repeats", type=click.IntRange(min=1), default=10, show_default=True,
              help="Timing rounds per config (the median is kept).")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="ONNX Runtime intra-op threads (the shipped table: 1).")
def fit_host_command(out: Path, name: str, problem: str, model: Path | None, configs: int, repeats: int,
                     threads: int) -> None:
    """Fit the `host` table's rates on this machine and write a table file.

    The shipped `host` table was measured on another machine. This times random per-layer
    configs of a model with ONNX Runtime here, refits the MAC rates, bandwidth and conversion
    times the timings identify (least squares), and writes a table to use with --hardware
    FILE. Figures the fit keeps, and every energy, stay the shipped ones and say so."""
    from qaev.hostfit.local import dump, fit_host, host_document

    command = (f"qaev hardware fit-host --problem {problem} --configs {configs} --repeats {repeats} "
               f"--threads {threads}" + (f" --model {model}" if model else ""))
    click.echo(f"timing {configs} configs x {repeats} rounds with ONNX Runtime ({threads} thread(s)) ...", err=True)
    result = fit_host(problem=problem, model=str(model) if model else None, configs=configs, repeats=repeats,
                      threads=threads, command=command)
    write_atomic(out, dump(host_document(result, name=name)))
    load_table(out)  # the written file is a valid table
    click.echo(f"wrote {out}: {name} fitted on {result['model']}; relative RMS of the fit "
               f"{100 * result['relative_rms']:.0f} %; rank correlation of the estimates with the latencies "
               f"measured on the timed configs: {result['spearman_fit_set_before']:.2f} with the shipped table, "
               f"{result['spearman_fit_set_after']:.2f} fitted")
    for field, value in result["fitted"].items():
        click.echo(f"  fitted {field:30s} {value:.3g}")
    click.echo(f"  kept (shipped): {', '.join(result['kept']) or 'none'}")
    click.echo(f"use it with --hardware {out}")
