"""The report's pictures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

* :func:`pareto_png` (:mod:`qaev.report.pareto`): the front in every 2-D projection of its
  objectives, with the float model, tolerance, baselines and exported points marked.
* :func:`bitmap_png`: a layers x points heat map of weight bits, each cell annotated with
  the activation mode.
"""
from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from qaev.report.gather import ReportData, act_label
from qaev.report.pareto import pareto_png
from qaev.report.png import png_bytes

__all__ = ["pareto_png", "bitmap_png", "select_points", "layer_groups", "readable_names", "BIT_LEVELS"]

#: Weight widths in the bit map, in colour order (32 stands for a float weight).
BIT_LEVELS = (2, 3, 4, 6, 8, 16, 32)
_MAX_POINTS = 40
#: Beyond this many layers the bit map draws thin rows labelled by group (``model.layers.12``).
_COMPACT_LAYERS = 60
_NUMBERED = re.compile(r"^(.*?\d+)[./_]")


def select_points(data: ReportData, *, limit: int = _MAX_POINTS) -> list[int]:
    """Indices of the points the bit map shows: all of them up to ``limit``, else evenly
    spaced along the front plus every exported point."""
    n = len(data.points)
    if n <= limit:
        return list(range(n))
    chosen = {round(i * (n - 1) / (limit - 1)) for i in range(limit)}
    chosen |= {i for i, p in enumerate(data.points) if p.exported}
    return sorted(chosen)


def readable_names(names, *, width: int = 38) -> list[str]:
    """Layer names for the bit map's rows: the ``/`` parts every name begins with dropped,
    and a name still longer than ``width`` shortened in the middle by whole ``/`` parts,
    keeping its head up to the first number (the block: ``blocks.4``, ``layer.3``) and as
    many of its last parts as fit."""
    names = list(names)
    cut = 0
    if len(names) > 1:
        shared = 0
        while shared < min(map(len, names)) and len({n[shared] for n in names}) == 1:
            shared += 1
        cut = max((k + 1 for k in range(shared) if names[0][k] == "/"), default=0)
    return [_shorten(name[cut:] or name, width) for name in names]


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    found = re.match(r"^[^\d]*?\d+", text)
    head = found.group(0) if found and len(found.group(0)) <= width // 2 else ""
    tail = ""
    for part in reversed(text[len(head):].split("/")):
        if part and len(head) + len(tail) + len(part) + 5 > width:
            break
        tail = f"/{part}{tail}" if part else tail
    if not tail:
        return text[:width // 3] + "..." + text[-(width - width // 3 - 3):]
    return f"{head}/...{tail}" if head else f"...{tail}"


def layer_groups(names) -> list[tuple[int, int, str]]:
    """Runs of consecutive layers that share a numbered prefix (``model.layers.12.`` ...):
    ``(first, last, prefix)``; a name without a number is a run of its own."""
    runs: list[tuple[int, int, str]] = []
    for r, name in enumerate(names):
        found = _NUMBERED.match(name)
        key = found.group(1) if found else name
        if runs and runs[-1][2] == key and found:
            runs[-1] = (runs[-1][0], r, key)
        else:
            runs.append((r, r, key))
    return runs


def _bit_grid(data: ReportData, picked: list[int]) -> tuple[np.ndarray, list[list[str]], np.ndarray]:
    """Colour index of every (layer, point), its cell text, and whether its activations are quantized."""
    layers = data.layer_names
    grid = np.full((max(len(layers), 1), max(len(picked), 1)), BIT_LEVELS.index(32), dtype=float)
    text = [["" for _ in picked] for _ in layers]
    acts = np.zeros(grid.shape, bool)
    for j, i in enumerate(picked):
        config = data.points[i].config
        for r, name in enumerate(layers):
            cfg = config.layer(name)
            bits = cfg.effective().w_bits if cfg is not None else None
            grid[r, j] = BIT_LEVELS.index(bits if bits is not None else 32)
            act = act_label(cfg)
            acts[r, j] = act != "float"
            text[r][j] = f"w{bits if bits is not None else 'f'}\n{'af' if act == 'float' else act}"
    return grid, text, acts


def _label_rows(ax, layers, rows: range, compact: bool) -> None:
    """Every layer's readable name, or for a long list each group of layers once, with rules
    between groups."""
    if not compact:
        ax.set_yticks(range(len(rows)), readable_names(layers)[rows.start:rows.stop], fontsize=7)
        return
    groups = layer_groups(layers)
    ax.set_yticks([(a + b) / 2 for a, b, _ in groups], readable_names([key for _, _, key in groups], width=24),
                  fontsize=7)
    for first, _, _ in groups[1:]:
        ax.axhline(first - 0.5, color="white", lw=0.8)


def _group_order(layers) -> str:
    """The order of the layers within the largest group (``self_attn.q_proj, ...``), or ''."""
    groups = layer_groups(layers)
    if not groups or all(b == a for a, b, _ in groups):
        return ""
    a, b, _ = max(groups, key=lambda g: g[1] - g[0])
    return ", ".join(n[len(_NUMBERED.match(n).group(1)) + 1:] for n in layers[a:b + 1] if _NUMBERED.match(n))


def _panels(n_layers: int, n_points: int, compact: bool) -> tuple[int, tuple[float, float]]:
    """How many side-by-side panels the layers wrap into, and the figure's size (inches):
    about as tall as wide and at most 16 inches tall (a compact map: one panel of thin rows)."""
    if compact:
        return 1, (3.4 + 0.26 * n_points, 2.6 + 0.065 * n_layers)
    one_wide, one_tall = 2.4 + 0.62 * n_points, 1.2 + 0.36 * n_layers
    panels = max(round((one_tall / one_wide) ** 0.5), math.ceil(one_tall / 16), 1)
    panels = min(panels, max(n_layers, 1))
    return panels, (1.2 + panels * one_wide, 2.0 + 0.36 * math.ceil(n_layers / panels))


def _cells(ax, grid: np.ndarray, text, acts: np.ndarray, compact: bool) -> None:
    """Cell text (bits / activations), or on a compact map a dot where activations are quantized."""
    if not compact and grid.size <= 1600:
        for r in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                dark = int(grid[r, j]) in (0, 5)
                ax.text(j, r, text[r][j], ha="center", va="center", fontsize=6.5, linespacing=0.95,
                        color="white" if dark else "black")
    elif acts.any():
        rows, cols = np.nonzero(acts)
        ax.scatter(cols, rows, s=4, marker="o", color="black", linewidths=0, label="quantized activations")


def bitmap_png(data: ReportData, path: Path | None = None, *, dpi: int = 110) -> bytes:
    """Draw the layers x points map of weight bits (cell text: bits and activation mode;
    beyond :data:`_COMPACT_LAYERS` layers, thin rows labelled by group, a dot marking
    quantized activations; a long list of layers wraps into side-by-side panels); returns
    the PNG bytes (also written to ``path``)."""
    picked = select_points(data)
    layers = data.layer_names
    compact = len(layers) > _COMPACT_LAYERS
    grid, text, acts = _bit_grid(data, picked)
    panels, size = _panels(len(layers), len(picked), compact)
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    cmap = ListedColormap(["#b2182b", "#ef8a62", "#fddbc7", "#d1e5f0", "#67a9cf", "#2166ac", "#bdbdbd"])
    norm = BoundaryNorm(np.arange(len(BIT_LEVELS) + 1) - 0.5, cmap.N)
    per = math.ceil(max(len(layers), 1) / panels)
    ids = [data.points[i].id + (" *" if data.points[i].exported else "") for i in picked]
    for k, ax in enumerate(axes):
        rows = range(k * per, min((k + 1) * per, grid.shape[0]))
        image = ax.imshow(grid[rows.start:rows.stop], cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
        _cells(ax, grid[rows.start:rows.stop], text[rows.start:rows.stop], acts[rows.start:rows.stop], compact)
        ax.set_xticks(range(len(picked)), ids, rotation=90, fontsize=7)
        _label_rows(ax, layers, rows, compact)
        ax.set_xlabel("front point (* exported)", fontsize=8)
    order = _group_order(layers) if compact else ""
    axes[0].set_ylabel("layer (graph order)" + (f"; within each group: {order}" if order else ""), fontsize=8)
    bar = fig.colorbar(image, ax=list(axes), ticks=range(len(BIT_LEVELS)), fraction=0.05 / panels, pad=0.02)
    bar.ax.set_yticklabels([str(b) if b != 32 else "float" for b in BIT_LEVELS], fontsize=7)
    bar.set_label("weight bits", fontsize=8)
    shown = "" if len(picked) == len(data.points) else f", {len(picked)} of {len(data.points)} points"
    cells = ("black dot: activations quantized (dynamic or static)" if compact else
             "cell: w<bits> (wf float) / activations a<bits>, dyn8 dynamic int8, af float")
    wrapped = "\n".join(textwrap.wrap(f"{cells}" + (f"; {panels} columns of layers, read left to right"
                                                     if panels > 1 else ""), width=int(size[0] * 15)))
    fig.suptitle(f"Weight bits per layer ({len(layers)} layers{shown})\n{wrapped}", fontsize=9)
    return png_bytes(fig, path, dpi=dpi)
