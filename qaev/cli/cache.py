"""``qaev cache``: where qaev keeps what it derives (calibration statistics, probes,
preprocessed images), how large it is, and clearing it."""
from __future__ import annotations

import shutil
from pathlib import Path

import click

from qaev.data._cache import CACHE_PARTS, cache_root

__all__ = ["cache"]

_WHERE = ("The cache is $QAEV_CACHE, else ~/.cache/qaev. Everything in it is derived and is made again "
          "when needed: clearing it costs time, never results.")


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@click.group("cache", invoke_without_command=True, help=f"Show the cache folder and its size.\n\n{_WHERE}")
@click.pass_context
def cache(ctx: click.Context) -> None:
    if ctx.invoked_subcommand is not None:
        return
    root = cache_root()
    click.echo(f"cache: {root}" + ("" if root.is_dir() else " (not created yet)"))
    if not root.is_dir():
        return
    total = 0
    for name in sorted(p.name for p in root.iterdir()):
        size = _size(root / name)
        total += size
        what = CACHE_PARTS.get(name, "not written by this version of qaev (clear leaves it)")
        click.echo(f"  {name:12s} {size / 1e6:10.1f} MB  {what}")
    click.echo(f"  {'total':12s} {total / 1e6:10.1f} MB")


@cache.command("clear")
@click.argument("parts", nargs=-1, type=click.Choice(sorted(CACHE_PARTS)))
def clear(parts: tuple[str, ...]) -> None:
    """Delete the cache's PARTS (default: every folder qaev keeps there).

    Only qaev's own folders are removed; anything else in the cache folder is left alone."""
    root = cache_root()
    freed = 0
    for name in parts or sorted(CACHE_PARTS):
        path = root / name
        if not path.exists():
            continue
        freed += _size(path)
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        click.echo(f"removed {path}")
    click.echo(f"freed {freed / 1e6:.1f} MB in {root}")
