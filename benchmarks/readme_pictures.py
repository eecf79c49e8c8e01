"""Draw the pictures in README.md and docs/: ``qaev report``'s front and bit map, small enough for a page.

    python benchmarks/readme_pictures.py                            # docs/digits-front.png, docs/digits-bitmap.png
    python benchmarks/readme_pictures.py --run lite0=runs/lite0     # docs/lite0-front.png, docs/lite0-bitmap.png
    python benchmarks/readme_pictures.py --genome                   # docs/genome-front.png, docs/bitmap-226.png

Digits (always): the README tour's search (``qaev search --out DIR``, default settings) in
a temporary folder, then its pictures. ``--run NAME=DIR`` (repeatable): the pictures of a
finished run, which is only read. ``--genome``: a short search of LLaMA-7B's 226-layer
genome (``benchmarks/genome_7b.py --pop 20 --generations 10``; analytic drop, estimated
latency). A picture over ``--max-kb`` is drawn again at a lower resolution.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from qaev.cli.main import main as qaev
from qaev.report.gather import gather
from qaev.report.plots import bitmap_png, pareto_png

DOCS = Path(__file__).resolve().parent.parent / "docs"
_DPIS = (110, 95, 80, 70, 60)


def _save(draw, data, path: Path, max_kb: int) -> None:
    for dpi in _DPIS:
        png = draw(data, dpi=dpi)
        if len(png) <= max_kb * 1024 or dpi == _DPIS[-1]:
            break
    path.write_bytes(png)
    print(f"wrote {path} ({len(png) / 1024:.0f} KB at {dpi} dpi)")


def draw_run(run: Path, front: Path, bitmap: Path, *, max_kb: int = 300) -> None:
    """The front and bit map of the finished ``run`` into ``front`` and ``bitmap``."""
    data = gather(run)
    _save(pareto_png, data, front, max_kb)
    _save(bitmap_png, data, bitmap, max_kb)


def _digits(work: Path, max_kb: int) -> None:
    run = work / "tour"
    if qaev(["search", "--out", str(run), "--quiet"]) != 0:
        raise SystemExit("the digits search failed")
    draw_run(run, DOCS / "digits-front.png", DOCS / "digits-bitmap.png", max_kb=max_kb)


def _genome(work: Path, max_kb: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import genome_7b

    run = work / "genome"
    genome_7b.main(["--pop", "20", "--generations", "10", "--out", str(run), "--points", "3"])
    draw_run(run, DOCS / "genome-front.png", DOCS / "bitmap-226.png", max_kb=max_kb)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", default=[], metavar="NAME=DIR",
                        help="also draw a finished run into docs/NAME-front.png and docs/NAME-bitmap.png")
    parser.add_argument("--genome", action="store_true", help="also draw a short search of the 226-layer genome")
    parser.add_argument("--max-kb", type=int, default=300, help="largest picture (KB) before a lower resolution")
    args = parser.parse_args(argv)
    runs = []
    for item in args.run:
        name, sep, folder = item.partition("=")
        if not sep or not name or not Path(folder, "front.json").is_file():
            parser.error(f"--run {item!r}: expected NAME=DIR with DIR/front.json")
        runs.append((name, Path(folder)))
    with tempfile.TemporaryDirectory() as tmp:
        _digits(Path(tmp), args.max_kb)
        for name, folder in runs:
            draw_run(folder, DOCS / f"{name}-front.png", DOCS / f"{name}-bitmap.png", max_kb=args.max_kb)
        if args.genome:
            _genome(Path(tmp), args.max_kb)


if __name__ == "__main__":
    main()
