"""``qaev hardware``: list and show cost tables, estimate a config's cost on a target."""
from __future__ import annotations

import json

import click

from qaev.documents import read_document
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
    click.echo(f"size_mb         {report.size_mb:.4f}  (exact weight bytes)")
    click.echo(f"peak_memory_mb  {report.peak_memory_mb:.4f}  (estimate)")
    if report.fallbacks:
        click.echo(f"* {len(report.fallbacks)} layer(s) not native on {report.target}: run as the executed pair")
    for warning in report.warnings:
        click.echo(f"warning: {warning}")
