"""The report's pictures, drawn with matplotlib's Agg canvas (no display, no pyplot state).

* :func:`pareto_png`: the front in every 2-D projection of its objectives, with the float
  model, baselines (``baselines.json``) and exported points marked.
* :func:`bitmap_png`: a layers x points heat map of weight bits, each cell annotated with
  the activation mode.
"""
from __future__ import annotations

import io
import math
import re
from itertools import combinations
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from qaev.files import write_atomic
from qaev.report.gather import ReportData, act_label

__all__ = ["pareto_png", "bitmap_png", "select_points", "layer_groups", "BIT_LEVELS"]

#: Weight widths in the bit map, in colour order (32 stands for a float weight).
BIT_LEVELS = (2, 3, 4, 6, 8, 16, 32)
_MAX_POINTS = 40
#: Beyond this many layers the bit map draws thin rows labelled by group (``model.layers.12``).
_COMPACT_LAYERS = 60
_NUMBERED = re.compile(r"^(.*?\d+)[./_]")


def _png(fig: Figure, path: Path | None) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    data = buf.getvalue()
    if path is not None:
        write_atomic(path, data)
    return data


def _label(objective: dict, hardware: str | None) -> str:
    text = f"{objective['name']} ({objective['unit']})"
    if objective["name"] == "size_mb":
        text += "\nby bit count (the exported file sizes: report.html)"
    if objective["kind"] == "estimated":
        text += f"\nestimate{' on ' + hardware if hardware else ''}"
    return text


def _float_marker(ax, x: np.ndarray, y: np.ndarray, fx: float, fy: float, x_name: str) -> None:
    """The float model as a star, or only as a legend entry when it would squash the front."""
    near = True
    for values, ref in ((x, fx), (y, fy)):
        if len(values):
            lo, hi = float(values.min()), float(values.max())
            span = max(hi - lo, 1e-12)
            near = near and lo - 1.5 * span <= ref <= hi + 1.5 * span
    if near:
        ax.scatter([fx], [fy], marker="*", s=160, color="0.45", zorder=3, label="float model")
    else:
        ax.plot([], [], marker="*", ls="", ms=11, color="0.45", label=f"float model: {x_name} {fx:.4g} (off axis)")


def _compression_axis(ax, name: str, float_ref: dict) -> None:
    """On a ``size_mb`` axis, a second scale on top: x smaller than float (by bit count)."""
    reference = float_ref.get(name) if name == "size_mb" else None
    if not reference:
        return
    inverse = lambda v: reference / np.maximum(np.asarray(v, float), 1e-12)  # noqa: E731 - its own inverse
    ax.secondary_xaxis("top", functions=(inverse, inverse)).set_xlabel("x smaller than float (by bit count)",
                                                                       fontsize=8)


def pareto_png(data: ReportData, path: Path | None = None) -> bytes:
    """Draw the front's 2-D projections; returns the PNG bytes (also written to ``path``).

    Each panel puts the later objective on x and the earlier one on y (with the default
    objectives: size on x, accuracy drop on y). A single objective is drawn against the
    point index.
    """
    objs = data.objectives
    names = [o["name"] for o in objs]
    pairs = list(combinations(range(len(names)), 2)) or [(0, None)]
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig = Figure(figsize=(5.2 * ncols, 4.3 * nrows), layout="constrained")
    values = np.array([[p.objectives[n] for n in names] for p in data.points], float).reshape(-1, len(names))
    exported = np.array([p.exported for p in data.points], bool)
    float_ref = data.doc.get("float", {})
    for k, (yi, xi) in enumerate(pairs):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        x = values[:, xi] if xi is not None else np.arange(len(values))
        y = values[:, yi]
        order = np.argsort(x, kind="stable")
        if len(names) == 2 and len(x):
            ax.step(x[order], y[order], where="post", color="tab:blue", alpha=0.35, lw=1)
        ax.scatter(x, y, s=28, color="tab:blue", zorder=3, label="front point")
        if exported.any():
            ax.scatter(x[exported], y[exported], s=150, facecolors="none", edgecolors="tab:red", lw=1.6,
                       zorder=4, label="exported (models/*.onnx)")
        for i, p in enumerate(data.points):
            ax.annotate(p.id, (x[i], y[i]), textcoords="offset points", xytext=(4, 3), fontsize=7, color="0.25")
        if xi is not None and names[xi] in float_ref and names[yi] in float_ref:
            _float_marker(ax, x, y, float_ref[names[xi]], float_ref[names[yi]], names[xi])
        for j, b in enumerate(data.baselines):
            bx = b["objectives"].get(names[xi]) if xi is not None else None
            by = b["objectives"].get(names[yi])
            if bx is None or by is None:
                continue
            ax.scatter([bx], [by], marker="X", s=90, color="black", zorder=5, label="baseline" if j == 0 else None)
            ax.annotate(b["name"], (bx, by), textcoords="offset points", xytext=(5, -10), fontsize=8)
        ax.set_xlabel(_label(objs[xi], data.hardware) if xi is not None else "point")
        if xi is not None:
            _compression_axis(ax, names[xi], float_ref)
        ax.set_ylabel(_label(objs[yi], data.hardware))
        ax.grid(True, alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Pareto front: {len(data.points)} points ({data.doc.get('metric', '?')}, "
                 f"{data.doc.get('evaluations', '?')} evaluations)", fontsize=11)
    return _png(fig, path)


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
    return _png(fig, path)
