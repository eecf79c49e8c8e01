"""Host latency: the median wall time of one inference in ONNX Runtime on this machine,
of one model or of several side by side."""
from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx

from qaev.model.session import make_session

__all__ = ["host_latency_ms", "side_by_side", "SideBySide", "machine_load", "cpu_name"]


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


def cpu_name() -> str:
    """The processor's model name with its family and model numbers (Linux: a virtual
    machine's name is often only the vendor's line, ``AMD EPYC``), else what ``platform`` knows."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor's block is enough
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    numbers = [f"{label} {fields[key]}" for key, label in (("cpu family", "family"), ("model", "model"))
               if key in fields]
    return fields["model name"] + (f" ({', '.join(numbers)})" if numbers else "")


def machine_load() -> tuple[float, float, float] | None:
    """The host's 1-, 5- and 15-minute load averages (None where the system has none)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return None
    return round(one, 2), round(five, 2), round(fifteen, 2)


@dataclass(frozen=True)
class SideBySide:
    """Latencies measured side by side (:func:`side_by_side`).

    Attributes:
        ms: model name -> median milliseconds of one run.
        reference: the name of the model the others are compared with (the float model).
        batch: samples in the input.
        threads: ONNX Runtime intra-op threads.
        level: ONNX Runtime optimisation level.
        rounds: rounds measured (each times every model once); the median round is kept.
        repeats: runs timed per model and round (their median is the round's value).
        load: the host's load averages before and after (:func:`machine_load`).
        cpus: logical CPUs of the host.
        input: what the input is, where it is not ``batch`` samples of the evaluation data
            (a decoder's: one decoded token with the cache of a prompt).
    """

    ms: dict[str, float]
    reference: str
    batch: int
    threads: int
    level: str
    rounds: int
    repeats: int
    load: tuple[tuple[float, float, float] | None, tuple[float, float, float] | None]
    cpus: int | None
    input: str = ""

    def speedup(self, name: str) -> float:
        """How many times faster model ``name`` runs than the reference."""
        return self.ms[self.reference] / self.ms[name]

    def settings(self) -> dict:
        """How the numbers were taken, JSON-ready (without the numbers)."""
        return {"kind": "measured", "batch": self.batch, "threads": self.threads, "ort_level": self.level,
                "rounds": self.rounds, "repeats": self.repeats, "load_before": self.load[0],
                "load_after": self.load[1], "cpus": self.cpus, **({"input": self.input} if self.input else {})}


def side_by_side(models: Mapping[str, onnx.ModelProto | bytes], feed: Mapping[str, np.ndarray], *, reference: str,
                 batch: int, rounds: int = 3, repeats: int = 20, warmup: int = 3, threads: int = 1,
                 level: str = "extended") -> SideBySide:
    """:func:`host_latency_ms` of every model in ``models``, the rounds interleaved (each
    round times every model once, in order), so drift in the machine's load hits all
    alike; each model's median round is kept.

    Args:
        models: name -> model (or its bytes); must hold ``reference``.
        feed: the input (``batch`` samples).
        reference: the model the others are compared with.
        batch: samples in ``feed`` (recorded).
        rounds, repeats, warmup, threads, level: as in :func:`host_latency_ms`.
    """
    if reference not in models:
        raise KeyError(f"side_by_side: reference {reference!r} is not among the models")
    before = machine_load()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            times[name].append(host_latency_ms(model, feed, repeats=repeats, warmup=warmup, threads=threads,
                                               level=level))
    return SideBySide(ms={name: statistics.median(values) for name, values in times.items()}, reference=reference,
                      batch=batch, threads=threads, level=level, rounds=rounds, repeats=repeats,
                      load=(before, machine_load()), cpus=os.cpu_count())
