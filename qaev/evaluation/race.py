"""The staged race and the first-stage screen of one candidate (see :mod:`.staging`)."""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from qaev.evaluation.evaluator import Evaluator, Measurement
from qaev.evaluation.staging import Staging

__all__ = ["Screened", "Stopped", "screen", "race"]


@dataclass(frozen=True)
class Screened:
    """A first-stage measurement: the drop over the first ``n`` items and its margin."""

    drop: float
    margin: float
    n: int
    outputs: np.ndarray
    items: np.ndarray | None
    seconds: float


@dataclass(frozen=True)
class Stopped:
    """A race stopped at a stage boundary: the drop over the first ``n`` items."""

    drop: float
    margin: float
    n: int
    seconds: float


def screen(evaluator: Evaluator, staging: Staging, session, *, feed: Mapping | None = None) -> Screened | None:
    """Run the first stage only (with ``feed`` merged into every batch: the simulator's
    inputs standing for the candidate); None when the set has no stage boundary."""
    ev = evaluator
    stops = staging.stops(len(ev.data), ev.batch_size)
    if not stops:
        return None
    start = time.perf_counter()
    batches = itertools.islice(ev.data.batches(batch_size=ev.batch_size), stops[0] // ev.batch_size)
    if feed is not None:
        batches = ({**batch, **feed} for batch in batches)
    head = ev.run(session, batches)
    items = ev.item_drops(head)
    drop, stderr = ev.head_drop(head, n_boot=staging.n_boot, items=items)
    return Screened(drop=drop, margin=staging.z * stderr, n=stops[0], outputs=head, items=items,
                    seconds=time.perf_counter() - start)


def race(evaluator: Evaluator, staging: Staging, session, *, stop: Callable[[float, float], bool],
         head: tuple[np.ndarray, int] | None = None) -> Measurement | Stopped:
    """Run the set batch by batch; at each stage boundary ask ``stop(drop, margin)`` whether
    the candidate can no longer reach the front. Returns the full measurement (the same
    batches as a plain one) or where it stopped. ``head``: outputs of the first items,
    already run (by the candidate's screen), and how many items they cover."""
    ev = evaluator
    batches = ev.data.batches(batch_size=ev.batch_size)
    parts, done, inference = [], 0, 0.0
    if head is not None:
        parts, done = [head[0]], head[1]
        for _ in itertools.islice(batches, done // ev.batch_size):  # skip them
            pass
    for boundary in staging.stops(len(ev.data), ev.batch_size):
        if boundary <= done:
            continue
        start = time.perf_counter()
        parts.append(ev.run(session, itertools.islice(batches, (boundary - done) // ev.batch_size)))
        inference += time.perf_counter() - start
        done = boundary
        drop, stderr = ev.head_drop(np.concatenate(parts), n_boot=staging.n_boot)
        if stop(drop, staging.z * stderr):
            return Stopped(drop=drop, margin=staging.z * stderr, n=done, seconds=inference)
    start = time.perf_counter()
    parts.append(ev.run(session, batches))
    inference += time.perf_counter() - start
    outputs = np.concatenate(parts)
    return Measurement(value=ev.score(outputs), n=len(ev.data), session_s=0.0, inference_s=inference, outputs=outputs)
