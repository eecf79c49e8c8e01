"""The report's pictures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

* :func:`pareto_png` (:mod:`qaev.report.pareto`): the front in every 2-D projection of its
  objectives, with the float model, tolerance, baselines and exported points marked.
* :func:`bitmap_png`: a layers x points heat map of weight bits, each cell annotated with
  the activation mode.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from qaev.report.gather import ReportData, act_label
from qaev.report.pareto import pareto_png
from qaev.report.png import png_bytes

__all__ = ["pareto_png", "bitmap_png", "select_points", "layer_groups", "BIT_LEVELS"]

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


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "..." + name[-(width - 3):]


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


def _label_rows(ax, layers, compact: bool) -> None:
    """Every layer's name, or for a long list each group of layers once, with rules between groups."""
    if not compact:
        ax.set_yticks(range(len(layers)), [_short(n) for n in layers], fontsize=7)
        return
    groups = layer_groups(layers)
    ax.set_yticks([(a + b) / 2 for a, b, _ in groups], [_short(key, 24) for _, _, key in groups], fontsize=7)
    for first, _, _ in groups[1:]:
        ax.axhline(first - 0.5, color="white", lw=0.8)
    if groups and any(b > a for a, b, _ in groups):
        a, b, _ = max(groups, key=lambda g: g[1] - g[0])
        order = ", ".join(n[len(_NUMBERED.match(n).group(1)) + 1:] for n in layers[a:b + 1] if _NUMBERED.match(n))
        ax.set_ylabel(f"layer (graph order); within each group: {order}", fontsize=8)


def bitmap_png(data: ReportData, path: Path | None = None) -> bytes:
    """Draw the layers x points map of weight bits (cell text: bits and activation mode;
    beyond :data:`_COMPACT_LAYERS` layers, thin rows labelled by group, a dot marking
    quantized activations); returns the PNG bytes (also written to ``path``)."""
    picked = select_points(data)
    layers = data.layer_names
    compact = len(layers) > _COMPACT_LAYERS
    grid, text, acts = _bit_grid(data, picked)
    width = min(2.8 + 0.62 * len(picked), 40)
    height = min(2.2 + 0.1 * len(layers), 40) if compact else min(1.6 + 0.36 * len(layers), 60)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    ax.set_ylabel("layer (graph order)")
    cmap = ListedColormap(["#b2182b", "#ef8a62", "#fddbc7", "#d1e5f0", "#67a9cf", "#2166ac", "#bdbdbd"])
    norm = BoundaryNorm(np.arange(len(BIT_LEVELS) + 1) - 0.5, cmap.N)
    image = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    if not compact and len(layers) * len(picked) <= 1600:
        for r in range(len(layers)):
            for j in range(len(picked)):
                dark = int(grid[r, j]) in (0, 5)
                ax.text(j, r, text[r][j], ha="center", va="center", fontsize=6.5, linespacing=0.95,
                        color="white" if dark else "black")
    elif acts.any():
        rows, cols = np.nonzero(acts)
        ax.scatter(cols, rows, s=4, marker="o", color="black", linewidths=0, label="quantized activations")
        ax.legend(loc="upper right", bbox_to_anchor=(1.0, 1.0 + 0.6 / height), fontsize=7, frameon=False)
    ax.set_xticks(range(len(picked)), [data.points[i].id + (" *" if data.points[i].exported else "")
                                       for i in picked], rotation=90, fontsize=7)
    _label_rows(ax, layers, compact)
    ax.set_xlabel("front point (* exported)")
    bar = fig.colorbar(image, ax=ax, ticks=range(len(BIT_LEVELS)), fraction=0.05, pad=0.02)
    bar.ax.set_yticklabels([str(b) if b != 32 else "float" for b in BIT_LEVELS], fontsize=7)
    bar.set_label("weight bits", fontsize=8)
    shown = "" if len(picked) == len(data.points) else f", {len(picked)} of {len(data.points)} points"
    cells = ("dot: activations quantized (dynamic or static)" if compact else
             "cell: w<bits> (wf float) / activations a<bits>, dyn8 dynamic int8, af float")
    ax.set_title(f"Weight bits per layer ({len(layers)} layers{shown})\n{cells}", fontsize=9)
    return png_bytes(fig, path)
