"""A search's result as a table: one row per front point, sorted along the front.

``summary(run_dir)`` reads a run directory's front.json; it also takes a front document
(``read_front``'s dict) or the :class:`~qaev.search.optimize.SearchResult` that
:func:`qaev.search.minimize` returns. Print it for a table; iterate it for rows.

Example:
    >>> from qaev.problems import get_problem
    >>> from qaev.search import minimize
    >>> table = summary(minimize(get_problem("digits", eval=64), pop_size=6, n_gen=1, seed=1), tolerance=1.0)
    >>> str(table).split()[:6]
    ['id', 'acc_drop', 'size_mb', 'metric', 'x', 'smaller']
    >>> table.rows[0].id, sorted(table.to_dicts()[0])
    ('p00', ['acc_drop', 'file_mb', 'id', 'metric', 'recommended', 'size_mb', 'x_smaller'])
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from qaev.quantize.footprint import format_mb
from qaev.runtime.rundir import read_front, recommend

__all__ = ["Summary", "SummaryRow", "summary"]


@dataclass(frozen=True)
class SummaryRow:
    """One front point.

    Attributes:
        id: the point's id (``p00``, ...; the id ``qaev export --point`` takes).
        objectives: objective name -> value.
        metric: the measured metric, when measured.
        x_smaller: the float model's bit-count size / the point's (None without a size).
        file_mb: the exported file's size, when it was written.
        recommended: whether this is the point to ship (the smallest within tolerance).
    """

    id: str
    objectives: dict = field(hash=False)
    metric: float | None
    x_smaller: float | None
    file_mb: float | None
    recommended: bool


@dataclass(frozen=True)
class Summary:
    """The rows of a front, sorted along it (the last objective ascending, as ``front.json``).

    Attributes:
        objectives: objective names, in the run's order.
        metric: the metric's name.
        rows: the points.
        rebuilt: the id of the recommended point's block-reconstruction rebuild, when that is
            what ``qaev export --point recommended`` writes (``recommended.refined``), else None.
    """

    objectives: tuple[str, ...]
    metric: str
    rows: tuple[SummaryRow, ...]
    rebuilt: str | None = None

    def __iter__(self) -> Iterator[SummaryRow]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_dicts(self) -> list[dict]:
        """One flat dict per row (e.g. for ``pandas.DataFrame``)."""
        return [{"id": r.id, **r.objectives, self.metric: r.metric, "x_smaller": r.x_smaller, "file_mb": r.file_mb,
                 "recommended": r.recommended} for r in self.rows]

    def _mark(self, row: SummaryRow) -> str:
        if not row.recommended:
            return ""
        return f"recommended (ships rebuilt: {self.rebuilt})" if self.rebuilt else "recommended"

    def __str__(self) -> str:
        head = ["id", *self.objectives, self.metric, "x smaller", "file MB", ""]
        cells = [[r.id, *(f"{r.objectives[n]:.4g}" for n in self.objectives),
                  "-" if r.metric is None else f"{r.metric:.2f}",
                  "-" if r.x_smaller is None else f"{r.x_smaller:.2f}x",
                  "-" if r.file_mb is None else format_mb(r.file_mb), self._mark(r)] for r in self.rows]
        widths = [max(len(str(c)) for c in column) for column in zip(head, *cells)]
        lines = ["  ".join(str(c).rjust(w) for c, w in zip(line, widths)).rstrip() for line in [head, *cells]]
        return "\n".join(lines)


def _x_smaller(point: dict, floats: dict) -> float | None:
    sizes = point.get("sizes") or {}
    if "x_smaller" in sizes:
        return float(sizes["x_smaller"])
    size, reference = point["objectives"].get("size_mb"), floats.get("size_mb")
    return reference / size if size and reference else None


def _from_doc(doc: dict) -> Summary:
    names = tuple(o["name"] for o in doc["objectives"])
    chosen = (doc.get("recommended") or {}).get("id")
    floats = doc.get("float") or {}
    rows = tuple(SummaryRow(id=p["id"], objectives={n: p["objectives"][n] for n in names}, metric=p.get("metric"),
                            x_smaller=_x_smaller(p, floats), file_mb=(p.get("sizes") or {}).get("file_mb"),
                            recommended=p["id"] == chosen) for p in doc["points"])
    return Summary(objectives=names, metric=doc.get("metric", "metric"), rows=rows,
                   rebuilt=(doc.get("recommended") or {}).get("refined"))


def _from_result(result, objectives: Sequence[str], tolerance: float | None) -> Summary:
    names = tuple(objectives)
    records = sorted(result.front, key=lambda r: tuple(r.objectives[n] for n in reversed(names)))
    points = [{"id": f"p{i:02d}", "objectives": {n: r.objectives[n] for n in names}, "metric": r.metric}
              for i, r in enumerate(records)]
    doc = {"objectives": [{"name": n} for n in names], "points": points, "float": result.float_objectives,
           "recommended": recommend(points, names, tolerance)}
    return _from_doc(doc)


def summary(source, *, objectives: Sequence[str] | None = None, tolerance: float | None = None) -> Summary:
    """The front of a search as a :class:`Summary` (print it for a table).

    Args:
        source: a run directory (``str`` or ``Path``), a front document (``dict``), or a
            :class:`~qaev.search.optimize.SearchResult`.
        objectives: with a ``SearchResult``: the objective names (default: those of its
            records); ignored otherwise.
        tolerance: with a ``SearchResult``: metric points of drop within which the
            recommended point is chosen (None: none recommended); a run directory records
            its own.

    Returns:
        The rows sorted along the front, with point ids as ``qaev export --point`` takes them.
    """
    if isinstance(source, (str, Path)):
        return _from_doc(read_front(Path(source)))
    if isinstance(source, dict):
        return _from_doc(source)
    front = getattr(source, "front", None)
    if front is None:
        raise TypeError(f"summary: expected a run directory, a front document or a SearchResult, "
                        f"got {type(source).__name__}")
    names = objectives or (tuple(front[0].objectives) if front else ())
    return _from_result(source, names, tolerance)
