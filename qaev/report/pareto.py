"""The report's Pareto picture: the front in every 2-D projection of its objectives.

Each panel puts the later objective on x and the earlier one on y (with the default
objectives: size on x, accuracy drop on y) and shows:

* the front points (joined by a step line with two objectives), the points kept near the
  front hollow, exported points ringed red, the recommended point ringed green;
* the float model as a star when it lies among the points, else as a dashed reference line
  at its value of the objective that stays on the axes (its other value in the legend);
* on an ``acc_drop`` axis: the tolerance as a dotted line, and the points past
  :func:`focus_limit` drawn as triangles on the top edge and counted in the legend, so
  that a few useless points do not squeeze the useful region into a corner;
* point ids on a few points only (recommended, exported, then spread along the front),
  each one kept only where it does not crowd a label already placed;
* on a ``size_mb`` axis, a second scale on top: how many times smaller than float.
"""
from __future__ import annotations

import math
from itertools import combinations
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from qaev.report.gather import ReportData
from qaev.report.png import png_bytes

__all__ = ["pareto_png", "draw_pareto", "focus_limit", "label_order", "MAX_LABELS"]

#: Point ids written on a panel at most.
MAX_LABELS = 10
_FLOAT = "0.45"
#: Ratios for the compression scale, roundest first (placed in this order where there is room).
_TIMES = (2, 4, 8, 16, 32, 64, 128, 256, 3, 5, 10, 20, 50, 100, 200, 1.5, 6, 12, 24, 40, 80, 160,
          1.25, 1.75, 2.5, 3.5, 4.5, 5.5, 7, 9, 14, 28)


def focus_limit(tolerance: float | None) -> float:
    """The drop beyond which a point is summarised instead of stretching the axis: five
    times the tolerance, and at least 5 metric points."""
    return max(5.0 * float(tolerance or 1.0), 5.0)


def label_order(data: ReportData) -> list[int]:
    """Indices of the points in the order their ids are placed: the recommended point, the
    exported ones, then the others spread along the front (ends first, then halves)."""
    recommended = (data.doc.get("recommended") or {}).get("id")
    first = [i for i, p in enumerate(data.points) if p.id == recommended]
    first += [i for i, p in enumerate(data.points) if p.exported and i not in first]
    n, rest, step = len(data.points), [], 1 << max(len(data.points) - 1, 1).bit_length()
    while step >= 1:
        rest += [i for i in range(0, n, step) if i not in rest]
        step //= 2
    return first + [i for i in [n - 1, *rest] if 0 <= i < n and i not in first]


def _label(objective: dict, hardware: str | None) -> str:
    text = f"{objective['name']} ({objective['unit']})"
    if objective["name"] == "size_mb":
        text += "\nby bit count (the exported file sizes: report.html)"
    if objective["kind"] == "estimated":
        text += f"\nestimate{' on ' + hardware if hardware else ''}"
    return text


def _focus(ax, y: np.ndarray, tolerance: float | None) -> np.ndarray:
    """On an acc_drop axis: the tolerance line, and y limits that leave out points past
    :func:`focus_limit`; returns which points are left out."""
    limit = focus_limit(tolerance)
    far = y > limit
    if tolerance is not None:
        ax.axhline(tolerance, ls=":", lw=1.2, color="tab:green", label=f"tolerance: drop {tolerance:g}")
    if far.sum() == 0 or (~far).sum() < 2:
        return np.zeros(len(y), bool)
    lo, hi = min(float(y[~far].min()), 0.0), max(float(y[~far].max()), tolerance or 0.0)
    pad = 0.08 * max(hi - lo, 1e-9)
    ax.set_ylim(lo - pad, hi + pad)
    return far


def _far_marks(ax, x: np.ndarray, far: np.ndarray, y: np.ndarray, tolerance: float | None) -> None:
    if not far.any():
        return
    top = ax.get_ylim()[1]
    ax.scatter(x[far], np.full(far.sum(), top), marker="^", s=40, color="tab:blue", alpha=0.6, clip_on=False,
               zorder=3, label=f"{far.sum()} point(s) with drop > {focus_limit(tolerance):g} "
                               f"(up to {float(y[far].max()):.3g}), on the top edge")


def _float_ref(ax, fx: float, fy: float, names: tuple[str, str]) -> None:
    """The float model: a star among the points, else a reference line (see the module docstring)."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    in_x, in_y = x0 <= fx <= x1, y0 <= fy <= y1
    if in_x and in_y:
        ax.scatter([fx], [fy], marker="*", s=170, color=_FLOAT, zorder=5, label="float model")
    elif in_y:
        ax.axhline(fy, ls="--", lw=1, color=_FLOAT,
                   label=f"float model: {names[1]} {fy:.3g} ({names[0]} {fx:.4g}, off the axis)")
    elif in_x:
        ax.axvline(fx, ls="--", lw=1, color=_FLOAT,
                   label=f"float model: {names[0]} {fx:.4g} ({names[1]} {fy:.3g}, off the axis)")
    else:
        ax.plot([], [], marker="*", ls="", ms=11, color=_FLOAT,
                label=f"float model: {names[0]} {fx:.4g}, {names[1]} {fy:.3g} (off the axes)")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)


def _ids(ax, x: np.ndarray, y: np.ndarray, shown: np.ndarray, data: ReportData) -> None:
    """Point ids, in :func:`label_order`, skipping any that would crowd one already placed."""
    ax.get_xlim(), ax.get_ylim()  # settle the autoscaled limits before reading positions
    to_axes = ax.transData + ax.transAxes.inverted()
    placed: list[tuple[float, float]] = []
    for i in label_order(data):
        if not shown[i] or len(placed) >= MAX_LABELS:
            continue
        at = to_axes.transform((x[i], y[i]))
        right = at[0] > 0.88  # near the right edge: the id goes to the left of its point
        middle = (at[0] + (-0.035 if right else 0.035), at[1] + 0.02)  # of the id's text, roughly
        if any(abs(middle[0] - p[0]) < 0.075 and abs(middle[1] - p[1]) < 0.045 for p in placed):
            continue
        placed.append(middle)
        ax.annotate(data.points[i].id, (x[i], y[i]), textcoords="offset points", xytext=(-4 if right else 4, 4),
                    ha="right" if right else "left", fontsize=7, color="0.2")


def _compression_axis(ax, name: str, float_ref: dict) -> None:
    """On a ``size_mb`` axis, a second scale on top, with a few round ratios as ticks."""
    reference = float_ref.get(name) if name == "size_mb" else None
    if not reference:
        return
    x0, x1 = ax.get_xlim()
    inverse = lambda v: reference / np.maximum(np.asarray(v, float), 1e-12)  # noqa: E731 - its own inverse
    ticks: list[float] = []
    for times in _TIMES:
        at = reference / times
        if x0 <= at <= x1 and all(abs(at - reference / t) / (x1 - x0) > 0.09 for t in ticks):
            ticks.append(times)
    if len(ticks) < 2:  # a narrow range: plain ticks between its ends
        lo, hi = sorted((reference / x1, reference / max(x0, 1e-12)))
        ticks = [float(t) for t in MaxNLocator(4).tick_values(lo, hi) if lo <= t <= hi]
    ticks.sort()
    top = ax.secondary_xaxis("top", functions=(inverse, inverse))
    top.set_xticks(ticks, [f"{t:g}x" for t in ticks], fontsize=8)
    top.set_xlabel("x smaller than float (by bit count)", fontsize=8)


def _panel(ax, data: ReportData, values: np.ndarray, yi: int, xi: int | None) -> None:
    names = [o["name"] for o in data.objectives]
    float_ref = data.doc.get("float", {})
    tolerance = (data.doc.get("recommended") or {}).get("tolerance")
    x = values[:, xi] if xi is not None else np.arange(len(values), dtype=float)
    y = values[:, yi]
    far = _focus(ax, y, tolerance) if names[yi] == "acc_drop" else np.zeros(len(y), bool)
    near = np.array([p.near for p in data.points], bool)
    if len(names) == 2 and len(x):
        order = [i for i in np.argsort(x, kind="stable") if not near[i]]
        ax.step(x[order], y[order], where="post", color="tab:blue", alpha=0.35, lw=1)
    ax.scatter(x[~far & ~near], y[~far & ~near], s=28, color="tab:blue", zorder=3, label="front point")
    if (near & ~far).any():
        ax.scatter(x[near & ~far], y[near & ~far], s=28, facecolors="none", edgecolors="tab:blue", zorder=3,
                   label="near the front (beaten by less than its standard error)")
    _far_marks(ax, x, far, y, tolerance)
    _rings(ax, data, x, y, far)
    _baselines(ax, data, names[xi] if xi is not None else None, names[yi])
    if xi is not None and names[xi] in float_ref and names[yi] in float_ref:
        _float_ref(ax, float_ref[names[xi]], float_ref[names[yi]], (names[xi], names[yi]))
    _ids(ax, x, y, ~far, data)
    ax.set_xlabel(_label(data.objectives[xi], data.hardware) if xi is not None else "point")
    if xi is not None:
        _compression_axis(ax, names[xi], float_ref)
    ax.set_ylabel(_label(data.objectives[yi], data.hardware))
    ax.grid(True, alpha=0.3)


def _rings(ax, data: ReportData, x: np.ndarray, y: np.ndarray, far: np.ndarray) -> None:
    exported = np.array([p.exported for p in data.points], bool) & ~far
    if exported.any():
        ax.scatter(x[exported], y[exported], s=150, facecolors="none", edgecolors="tab:red", lw=1.6, zorder=4,
                   label="exported (models/*.onnx)")
    recommended = (data.doc.get("recommended") or {}).get("id")
    chosen = np.array([p.id == recommended for p in data.points], bool) & ~far
    if chosen.any():
        ax.scatter(x[chosen], y[chosen], s=260, facecolors="none", edgecolors="tab:green", lw=1.6, zorder=4,
                   label="recommended (smallest within tolerance)")


def _baselines(ax, data: ReportData, x_name: str | None, y_name: str) -> None:
    for j, b in enumerate(data.baselines):
        bx, by = b["objectives"].get(x_name), b["objectives"].get(y_name)
        if bx is None or by is None:
            continue
        ax.scatter([bx], [by], marker="X", s=90, color="black", zorder=5, label="baseline" if j == 0 else None)
        ax.annotate(b["name"], (bx, by), textcoords="offset points", xytext=(5, -10), fontsize=8)


def draw_pareto(fig: Figure, data: ReportData) -> list:
    """Draw the front's 2-D projections on ``fig`` (see the module docstring); returns the
    panels' axes. A single objective is drawn against the point index."""
    names = [o["name"] for o in data.objectives]
    pairs = list(combinations(range(len(names)), 2)) or [(0, None)]
    ncols = min(3, len(pairs))
    nrows = math.ceil(len(pairs) / ncols)
    fig.set_size_inches(5.6 * ncols, 4.6 * nrows)
    values = np.array([[p.objectives[n] for n in names] for p in data.points], float).reshape(-1, len(names))
    axes = []
    for k, (yi, xi) in enumerate(pairs):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        _panel(ax, data, values, yi, xi)
        if k == 0:
            ax.legend(fontsize=7, loc="best")
        axes.append(ax)
    fig.suptitle(f"Pareto front: {len(data.points)} points ({data.doc.get('metric', '?')}, "
                 f"{data.doc.get('evaluations', '?')} evaluations)", fontsize=11)
    return axes


def pareto_png(data: ReportData, path: Path | None = None, *, dpi: int = 110) -> bytes:
    """:func:`draw_pareto` as PNG bytes at ``dpi`` (also written to ``path``)."""
    fig = Figure(layout="constrained")
    draw_pareto(fig, data)
    return png_bytes(fig, path, dpi=dpi)
