"""Prepare the next candidates while the current one runs.

Building a candidate's QDQ graph and opening its ONNX Runtime session do not depend on
any measurement, so a second thread can do them for candidate ``i + 1`` while candidate
``i`` runs its inference (ORT releases the GIL while it runs). On a small model, where
building and opening a session cost a third of the inference, this hides them; the
results are the same, in the same order. ``depth`` threads, as many candidates ahead:
at most ``depth + 1`` prepared sessions are alive at a time.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Callable, Iterator, Sequence, TypeVar

__all__ = ["prepared_ahead", "prefetch_depth"]

T = TypeVar("T")
R = TypeVar("R")


def prefetch_depth(threads: int = 1) -> int:
    """How many candidates to prepare ahead: the cores left beside ``threads`` ORT threads,
    at most 2 (``QAEV_PREFETCH=0`` turns it off, ``QAEV_PREFETCH=N`` sets it). More threads
    than cores slow the inference down more than they save (benchmarks/RESULTS.md,
    "Prefetch")."""
    value = os.environ.get("QAEV_PREFETCH", "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return 0
    if value.isdigit():
        return int(value)
    return max(0, min(2, (os.cpu_count() or 1) - max(1, threads)))


def prepared_ahead(items: Sequence[T], prepare: Callable[[T], R], *,
                   depth: int = 1) -> Iterator[tuple[T, Future | None]]:
    """Yield ``(item, future of prepare(item))``, the next ``depth`` items' preparation
    already started on ``depth`` other threads. With ``depth`` 0 (or a single item) the
    future is None and the consumer prepares in its own thread. An exception in
    ``prepare`` is raised by the future's ``result()``; leaving the loop early cancels
    what has not started."""
    items = list(items)
    if depth < 1 or len(items) < 2:
        for item in items:
            yield item, None
        return
    pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="qaev-prepare")
    try:
        queued = [pool.submit(prepare, item) for item in items[:depth]]
        for i, item in enumerate(items):
            current = queued.pop(0)
            wait([current])  # then start the next: depth + 1 prepared candidates at most
            if i + depth < len(items):
                queued.append(pool.submit(prepare, items[i + depth]))
            yield item, current
    except BaseException:  # interrupted or abandoned: do not hold the caller up for work it will not use
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
