"""Live progress of ``qaev search``: a tqdm bar, nothing, or JSON lines.

Three modes, chosen by :func:`make_progress`:

* ``bar``: status lines and a tqdm bar over generations on stderr. The bar's postfix
  shows evaluations, cache hits, front size, hypervolume, the predictor's rank correlation
  (when a predictor chose the generation's offspring) and the search's elapsed time and
  ETA; a second line shows a few points of the current front (from the cheapest to the
  best metric). On a stream that is not a terminal the bar becomes one plain line per
  generation, so logs stay readable.
* ``quiet``: nothing until the final line.
* ``json``: one JSON object per line on stdout (``event``: ``start``, ``generation``,
  ``candidate``, ``done``); human-readable lines go to stderr.

When candidates take :data:`SLOW_CANDIDATE_S` seconds or more, the generation's progress
shows in between: ``gen 2: candidate 7/20, 34 s each, ~7:22 left in this generation``
(on the bar, or off a terminal as a line at most every 30 s).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Sequence, TextIO

from tqdm import tqdm

from qaev.errors import ConfigError

if TYPE_CHECKING:
    from qaev.search.optimize import Generation
    from qaev.runtime.store import Record

__all__ = ["Progress", "make_progress", "best_tradeoffs", "MODES", "LEGEND", "SLOW_CANDIDATE_S"]

MODES = ("bar", "quiet", "json")
#: Candidates slower than this many seconds (mean of the last ones) get progress within a generation.
SLOW_CANDIDATE_S = 2.0
_CANDIDATE_EVERY_S = 30.0
_RECENT = 20
_SHORT = {"acc_drop": "drop", "size_mb": "MB", "est_latency_ms": "est.ms", "est_energy_mj": "est.mJ",
          "host_latency_ms": "host ms"}

#: What each field of the progress line means (printed once when the search begins, and in
#: ``qaev search --help``).
LEGEND = (
    ("gen", "generations done / to run (under a time budget: done; the budget decides how many)"),
    ("evals", "candidates evaluated by this process"),
    ("hits", "candidates answered from the memo (evaluations.jsonl: repeats, a resumed run's) without measuring"),
    ("front", "points on the current Pareto front, those near it included ('first-stage values': screened on the "
              "first subset only)"),
    ("HV", "hypervolume of the front, each objective divided by the float model's value (acc_drop by the float "
           "metric), reference point 1.1 in each; higher is better"),
    ("pred. rank", "Spearman correlation of the predictor's drops for the generation's new candidates with "
                   "their measured drops"),
    ("M:SS<M:SS", "search time so far < time left: estimated from the time per generation so far, or under a "
                  "time budget the time left in the budget"),
    ("candidate k/n", "within a generation whose candidates take seconds: candidates measured / to measure, the "
                      "mean seconds of the last ones, and the generation's time left at that rate"),
    ("best", "a few front points along the second objective, as " + ", ".join(f"{v} = {k}" for k, v in _SHORT.items())),
)


def legend_text() -> str:
    """:data:`LEGEND` as one line."""
    return "; ".join(f"{key}: {meaning}" for key, meaning in LEGEND)


def best_tradeoffs(front: Sequence[Record], objectives: Sequence[str], *, levels: int = 4) -> list[dict]:
    """A few points of ``front`` spread along its second objective (e.g. size levels).

    Args:
        front: the current non-dominated records.
        objectives: objective names; the second one (the first if there is one) orders
            the points, so with ``acc_drop,size_mb`` this is "the best drop at a few sizes".
        levels: how many points at most.

    Returns:
        ``[{"objectives": {...}, "metric": m}, ...]`` ordered along that objective.
    """
    names = list(objectives)
    usable = [r for r in front if all(r.objectives.get(n) is not None for n in names)]
    if not usable or not names:
        return []
    axis = names[1] if len(names) > 1 else names[0]
    usable.sort(key=lambda r: tuple(r.objectives[n] for n in (axis, *names)))
    if len(usable) > levels:
        step = (len(usable) - 1) / (levels - 1)
        usable = [usable[round(i * step)] for i in range(levels)]
    return [{"objectives": {n: r.objectives[n] for n in names}, "metric": r.metric} for r in usable]


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class _Bar(tqdm):
    """A tqdm bar whose right-hand text is ours (``{fields}``), without tqdm's ", " prefix."""

    fields = ""

    @property
    def format_dict(self):
        return {**super().format_dict, "fields": self.fields}


def _eta(row: Generation, total: int) -> float | None:
    if row.gen <= 0 or total <= 0:
        return None
    return max(total - row.gen, 0) * row.elapsed_s / row.gen


class Progress:
    """Reports a search as it runs; call it with each :class:`~qaev.search.optimize.Generation`.

    Args:
        mode: ``bar``, ``quiet`` or ``json`` (see the module docstring).
        total_generations: generations the search will run (for the bar and the ETA).
        objectives: objective names, to format the best trade-offs (taken from the
            front's records when omitted).
        err: where human-readable output goes (default ``sys.stderr``).
        out: where JSON lines and the final line go (default ``sys.stdout``).
        clock: seconds, monotonic (a fake one in tests).
    """

    def __init__(self, mode: str, *, total_generations: int, objectives: Sequence[str] | None = None,
                 err: TextIO | None = None, out: TextIO | None = None, clock=time.monotonic) -> None:
        if mode not in MODES:
            raise ConfigError(f"progress mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.total = int(total_generations)
        self.objectives = list(objectives) if objectives else None
        self.err = err if err is not None else sys.stderr
        self.out = out if out is not None else sys.stdout
        self._bar = None
        self._status = None
        self.clock = clock
        #: ``clock()`` value at which a ``--time`` search stops starting candidates (None: no budget).
        self.deadline: float | None = None
        self._gen = 0
        self._recent: list[float] = []
        self._last_line: float | None = None

    # -- output helpers ----------------------------------------------------------------
    @property
    def _tty(self) -> bool:
        """A terminal with a known width (a bar on anything else is noise)."""
        isatty = getattr(self.err, "isatty", None)
        if not (isatty and isatty()):
            return False
        try:
            return os.get_terminal_size(self.err.fileno()).columns > 0
        except (AttributeError, OSError, ValueError):
            return True  # a terminal-like stream without a file descriptor

    def _line(self, text: str) -> None:
        if self._bar is not None:
            tqdm.write(text, file=self.err)
        else:
            self.err.write(text + "\n")
            self.err.flush()

    def _json(self, **data) -> None:
        self.out.write(json.dumps(data) + "\n")
        self.out.flush()

    # -- the events ------------------------------------------------------------------------
    def start(self, text: str, **info) -> None:
        """The first line, printed at once (before the slow setup such as calibration)."""
        if self.mode == "json":
            self._json(event="start", total_generations=self.total, **info)
        if self.mode != "quiet":
            self._line(text)

    def message(self, text: str) -> None:
        """A status line for people (stderr; nothing when quiet)."""
        if self.mode != "quiet":
            self._line(text)

    def begin(self, text: str) -> None:
        """A status line and the progress line's legend, then the bar at generation 0 (the
        search proper starts)."""
        self.message(text)
        if self.mode == "bar":
            self.message(f"progress line: {legend_text()}")
        if self.mode == "bar" and self._tty and self._bar is None:
            self._bar = _Bar(total=self.total, file=self.err, dynamic_ncols=True, leave=True,
                             bar_format="gen {n_fmt}/{total_fmt} |{bar}| {fields}")
            self._bar.fields = "evaluating the first generation"
            self._bar.refresh()
            self._status = tqdm(total=0, file=self.err, dynamic_ncols=True, leave=False, position=1,
                                bar_format="{desc}", desc="  best -")

    def _best_text(self, best: list[dict]) -> str:
        if not best:
            return "-"
        names = list(best[0]["objectives"])
        head = "/".join(_SHORT.get(n, n) for n in names)
        points = "  ".join("/".join(f"{p['objectives'][n]:.3g}" for n in names) for p in best)
        return f"({head}) {points}"

    def __call__(self, row: Generation, front: Sequence[Record]) -> None:
        """Report one generation."""
        if self.objectives is None and front:
            self.objectives = list(front[0].objectives)
        best = best_tradeoffs(front, self.objectives or [])
        self._gen = row.gen
        eta = _eta(row, self.total) if self.deadline is None else max(self.deadline - self.clock(), 0.0)
        if self.mode == "json":
            self._json(event="generation", **row.to_dict(), total_generations=self.total, eta_s=eta, best=best)
            return
        if self.mode == "quiet":
            return
        rank = "" if row.predictor_rank is None else f"  pred. rank {row.predictor_rank:.2f}"
        fields = (f"evals {row.evaluations}  hits {row.cache_hits}  front {row.front_size}"
                  f"{' (first-stage values)' if row.provisional else ''}  "
                  f"HV {row.hypervolume:.4f}{rank}  {_fmt_time(row.elapsed_s)}<{_fmt_time(eta)}")
        gen = f"gen {row.gen}" if self.deadline is not None else f"gen {row.gen}/{self.total}"  # --time: no cap shown
        if not self._tty:
            self._line(f"{gen}  {fields}  best {self._best_text(best)}")
            return
        if self._bar is None:
            self.begin("searching")
        if self.deadline is not None:
            self._bar.total = None
        self._bar.fields = fields
        self._bar.update(max(row.gen - self._bar.n, 0))
        self._bar.refresh()
        self._status.set_description_str(f"  best {self._best_text(best)}")

    def candidate(self, done: int, total: int, seconds: float) -> None:
        """One more candidate of the current generation measured (``done`` of ``total``,
        that one in ``seconds``): a progress line when candidates are slow."""
        self._recent = [*self._recent[-(_RECENT - 1):], float(seconds)]
        each = sum(self._recent) / len(self._recent)
        if self.mode == "quiet" or each < SLOW_CANDIDATE_S or done >= total:
            return
        left = (total - done) * each
        if self.mode == "json":
            self._json(event="candidate", gen=self._gen + 1, done=done, total=total, each_s=round(each, 3),
                       generation_left_s=round(left, 1))
            return
        text = (f"gen {self._gen + 1}: candidate {done}/{total}, {each:.3g} s each, "
                f"~{_fmt_time(left)} left in this generation")
        if self._bar is not None:
            self._bar.fields = text
            self._bar.refresh()
            return
        now = self.clock()
        if self._last_line is None or now - self._last_line >= _CANDIDATE_EVERY_S:
            self._last_line = now
            self._line(text)

    def close(self) -> None:
        """Close the bar (safe to call twice, and after an error)."""
        for bar in (self._status, self._bar):
            if bar is not None:
                bar.close()
        self._bar = self._status = None

    def finish(self, text: str, **summary) -> None:
        """The final line: on stdout (stderr in ``json`` mode, where a ``done`` object goes
        to stdout instead)."""
        self.close()
        if self.mode == "json":
            self._json(event="done", **summary)
            self._line(text)
        else:
            self.out.write(text + "\n")
            self.out.flush()


def make_progress(mode: str, *, total_generations: int, objectives: Sequence[str] | None = None,
                  err: TextIO | None = None, out: TextIO | None = None, clock=time.monotonic) -> Progress:
    """A :class:`Progress`: a callable ``(Generation, front)`` with ``start``, ``message``,
    ``begin``, ``finish`` and ``close``.

    Example:
        >>> import io
        >>> from qaev.search.optimize import Generation
        >>> buf = io.StringIO()
        >>> p = make_progress("json", total_generations=2, out=buf, err=io.StringIO())
        >>> p(Generation(gen=1, evaluations=6, cache_hits=0, front_size=2, hypervolume=0.5, elapsed_s=1.0), [])
        >>> json.loads(buf.getvalue())["eta_s"]
        1.0
    """
    return Progress(mode, total_generations=total_generations, objectives=objectives, err=err, out=out,
                    clock=clock)
