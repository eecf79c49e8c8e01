"""Host latency: the median wall time of one inference in ONNX Runtime on this machine."""
from __future__ import annotations

import statistics
import time
from typing import Mapping

import numpy as np
import onnx

from qaev.model.session import make_session

__all__ = ["host_latency_ms"]


def host_latency_ms(model: onnx.ModelProto | bytes, feed: Mapping[str, np.ndarray], *, repeats: int = 10,
                    warmup: int = 2, threads: int = 1, level: str = "extended") -> float:
    """Median milliseconds of one run of ``model`` on ``feed`` (measured; ``warmup`` runs
    first, at ONNX Runtime optimisation ``level`` with ``threads`` intra-op threads)."""
    session = make_session(model, threads=threads, level=level)
    for _ in range(warmup):
        session.run(None, dict(feed))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, dict(feed))
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
