"""Parallel evaluation through pymoo's runners (local processes or a Dask cluster).

Workers never receive the model, data or sessions: they receive the run's
:class:`~qaev.search.spec.RunSpec` and the function that builds a problem from it, rebuild
the problem once per process (calibration statistics come from the on-disk cache), and
return plain record dicts. Results are deterministic per config, so the same seed gives the
same front whatever the runner.
"""
from __future__ import annotations

import math
import os
from typing import Callable

import numpy as np

from qaev.config import QuantConfig
from qaev.errors import ConfigError
from qaev.runtime.store import Record

__all__ = ["RemoteEvaluation", "make_runner", "check_run_options"]

_WORKER_PROBLEMS: dict = {}


class RemoteEvaluation:
    """The picklable callable a pymoo runner maps over payloads ``{"config", "front"}``.

    Args:
        spec: the run's :class:`~qaev.search.spec.RunSpec`.
        build: ``spec -> problem`` evaluating locally (:func:`qaev.search.build.build_local`;
            pickled by reference, so a worker imports it).
    """

    def __init__(self, spec, *, build: Callable) -> None:
        self.spec = spec
        self.build = build

    def problem(self):
        """This process's problem of the spec (built on first use)."""
        key = self.spec.key()
        problem = _WORKER_PROBLEMS.get(key)
        if problem is None:
            problem = _WORKER_PROBLEMS[key] = self.build(self.spec)
        return problem

    def warm(self) -> None:
        """Build this process's problem now (a worker does so before its first candidate's
        time limit starts)."""
        self.problem()

    def __call__(self, payload: dict) -> dict:
        problem = self.problem()
        front = None if payload.get("front") is None else np.asarray(payload["front"], float).reshape(-1, problem.n_obj)
        return problem.compute(QuantConfig.from_dict(payload["config"]), front=front).to_dict()

    def failure(self, payload: dict, reason: str, *, limit_s: float | None = None) -> dict:
        """The record of a candidate whose evaluation crashed its worker or ran past the
        time limit ``limit_s``."""
        config = QuantConfig.from_dict(payload["config"])
        return Record(key=config.key(), objectives={}, metric=None, config=payload["config"], error=reason,
                      limit_s=limit_s).to_dict()


class _SafeDask:
    """pymoo's Dask runner, with a failed job (a killed worker, an exception) turned into
    that candidate's failure record instead of failing the generation."""

    def __init__(self, client, *, own: bool = False) -> None:
        from pymoo.parallelization.dask import DaskParallelization

        self.inner = DaskParallelization(client)
        self.client = client
        self.own = own

    def close(self) -> None:
        """Disconnect from the cluster when the runner connected (a client given stays open)."""
        if self.own:
            self.client.close()

    def __call__(self, f, X):
        jobs = [self.client.submit(f, x, pure=False) for x in X]
        out = []
        for job, x in zip(jobs, X):
            try:
                out.append(job.result())
            except Exception as exc:
                out.append(f.failure(x, f"{type(exc).__name__}: {exc}"))
        return out


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def check_run_options(*, workers: int | None, timeout: float | None) -> None:
    """Refuse ``--workers`` below 1 and a ``--timeout`` that is not a positive, finite number.

    Raises:
        ConfigError: naming the option.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers: expected a whole number of at least 1, got {workers!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"--timeout: expected a positive number of seconds, got {timeout!r}")


def make_runner(*, workers: int | None = None, dask=None, timeout: float | None = None, pop: int | None = None,
                note: Callable[[str], None] | None = None):
    """A runner with pymoo's interface ``runner(f, X)``: a Dask cluster (``dask``: an
    address or a ``dask.distributed.Client``, through pymoo's ``DaskParallelization``),
    local worker processes (``workers`` > 1 or a ``timeout``:
    :class:`qaev.runtime.isolation.IsolatedRunner`, which survives crashed and hung candidates), or
    None for in-process evaluation. Each evaluation uses one ONNX Runtime thread.
    Local workers are clamped to what can run at once, the population ``pop`` and the
    cores this process may use, with a ``note`` saying so.
    Call ``close()`` on a local runner when done.

    Raises:
        ConfigError: ``workers`` below 1, or a ``timeout`` that is not a positive number.
    """
    check_run_options(workers=workers, timeout=timeout)
    if dask is not None:
        from dask.distributed import Client

        return _SafeDask(dask) if isinstance(dask, Client) else _SafeDask(Client(dask), own=True)
    if (workers and workers > 1) or timeout is not None:
        from qaev.runtime.isolation import IsolatedRunner

        wanted = workers or 1
        usable = max(1, min(wanted, pop or wanted, _cores()))
        if usable < wanted and note is not None:
            why = "the population" if pop is not None and usable == pop else "the cores this process may use"
            note(f"--workers {wanted}: running {usable} worker process(es), {why}")
        return IsolatedRunner(workers=usable, timeout=timeout)
    return None
