"""``qaev report``: pictures and a self-contained HTML page of a finished search.

    write_report(DIR) -> DIR/pareto.png, DIR/bitmap.png, DIR/report.html
"""
from __future__ import annotations

from pathlib import Path

from qaev.files import write_atomic
from qaev.report.gather import ReportData, gather
from qaev.report.html import render_html
from qaev.report.plots import bitmap_png, pareto_png

__all__ = ["write_report", "gather", "ReportData", "render_html", "pareto_png", "bitmap_png"]


def write_report(run_dir: str | Path, *, out_dir: str | Path | None = None,
                 model: str | Path | None = None) -> dict[str, Path]:
    """Write ``pareto.png``, ``bitmap.png`` and ``report.html`` for a run directory.

    Args:
        run_dir: the directory ``qaev search`` wrote.
        out_dir: where to write (default ``run_dir``).
        model: the float model, if it moved since the search.

    Returns:
        ``{"pareto": path, "bitmap": path, "html": path}``.
    """
    data = gather(run_dir, model=model)
    out = Path(out_dir) if out_dir is not None else Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"pareto": out / "pareto.png", "bitmap": out / "bitmap.png", "html": out / "report.html"}
    pareto = pareto_png(data, files["pareto"])
    bitmap = bitmap_png(data, files["bitmap"])
    write_atomic(files["html"], render_html(data, pareto=pareto, bitmap=bitmap))
    return files
