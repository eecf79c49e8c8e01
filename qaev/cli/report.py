"""``qaev report``: the pictures and HTML page of a finished search."""
from __future__ import annotations

from pathlib import Path

import click

__all__ = ["report"]


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", type=click.Path(path_type=Path), default=None, show_default="RUN_DIR",
              help="Directory for report.html, pareto.png and bitmap.png.")
@click.option("--model", type=click.Path(path_type=Path), default=None, show_default="the path front.json names",
              help="Float model, if it moved.")
def report(run_dir: Path, out_dir: Path | None, model: Path | None) -> None:
    """Write pareto.png, bitmap.png and a self-contained report.html for RUN_DIR."""
    from qaev.report import write_report

    files = write_report(run_dir, out_dir=out_dir, model=model)
    for path in files.values():
        click.echo(f"wrote {path}")
