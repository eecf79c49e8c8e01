"""Parallel evaluation through pymoo's runners (local processes or a Dask cluster).

Workers never receive the model, data or sessions: they receive a small
:class:`Recipe`, rebuild the problem once per process (calibration statistics come from
the on-disk cache), and return plain record dicts. Results are deterministic per config,
so the same seed gives the same front whatever the runner.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["Recipe", "RemoteEvaluation", "make_runner"]

_WORKER_PROBLEMS: dict = {}


@dataclass(frozen=True)
class Recipe:
    """How to rebuild a :class:`~qaev.search.problem.QuantizationProblem` in a worker.

    Attributes:
        problem: a registered problem name, or None with ``model_path``.
        problem_options: options of :func:`qaev.problems.problem_parts`.
        model_path: a float ONNX model (with ``data_options``).
        data_options: fields of :class:`qaev.data.tasks.DataOptions`.
        metric: the metric to score with.
        objectives, constraints, hardware, space, staging: as in the problem.
    """

    problem: str | None = None
    problem_options: dict = field(default_factory=dict)
    model_path: str | None = None
    data_options: dict = field(default_factory=dict)
    metric: str | None = None
    objectives: tuple = ("acc_drop", "size_mb")
    constraints: dict = field(default_factory=dict)
    hardware: str | None = None
    space: dict = field(default_factory=dict)
    staging: dict | None = None

    def key(self) -> str:
        """Identity of the recipe within a worker process."""
        import json

        return json.dumps(asdict(self), sort_keys=True, default=str)

    def build(self):
        """Build the problem (no store, no runner: it evaluates locally)."""
        from qaev.evaluation.evaluator import Evaluator
        from qaev.model.graph import load_model
        from qaev.search.problem import QuantizationProblem
        from qaev.problems import problem_parts
        from qaev.quantize import Quantizer
        from qaev.search.space import SearchSpace
        from qaev.evaluation.staging import Staging
        from qaev.data.tasks import DataOptions, load_task

        if self.problem is not None:
            parts = problem_parts(self.problem, **self.problem_options)
            model, calib, evaluation, metric = parts.model, parts.calib, parts.eval, parts.metric
        else:
            model = load_model(self.model_path)
            task = load_task(DataOptions(**self.data_options), model)
            calib, evaluation, metric = task.calib, task.eval, task.metric
        quantizer = Quantizer.calibrated(model, calib)
        return QuantizationProblem(
            quantizer, Evaluator(model, evaluation, metric=self.metric or metric),
            space=SearchSpace(layers=quantizer.layers, **self.space), objectives=self.objectives,
            constraints=self.constraints, hardware=self.hardware,
            staging=Staging(**self.staging) if self.staging is not None else None)


class RemoteEvaluation:
    """The picklable callable a pymoo runner maps over payloads ``{"config", "front"}``."""

    def __init__(self, recipe: Recipe) -> None:
        if recipe is None:
            raise ValueError("parallel evaluation needs the problem's recipe (see qaev.runtime.parallel.Recipe)")
        self.recipe = recipe

    def __call__(self, payload: dict) -> dict:
        from qaev.config import QuantConfig

        key = self.recipe.key()
        problem = _WORKER_PROBLEMS.get(key)
        if problem is None:
            problem = _WORKER_PROBLEMS[key] = self.recipe.build()
        front = None if payload.get("front") is None else np.asarray(payload["front"], float).reshape(-1, problem.n_obj)
        return asdict(problem.compute(QuantConfig.from_dict(payload["config"]), front=front))

    def failure(self, payload: dict, reason: str) -> dict:
        """The record of a candidate whose evaluation crashed its worker or timed out."""
        from qaev.config import QuantConfig
        from qaev.runtime.store import Record

        config = QuantConfig.from_dict(payload["config"])
        return asdict(Record(key=config.key(), objectives={}, metric=None, config=payload["config"], error=reason))


class _SafeDask:
    """pymoo's Dask runner, with a failed job (a killed worker, an exception) turned into
    that candidate's failure record instead of failing the generation."""

    def __init__(self, client) -> None:
        from pymoo.parallelization.dask import DaskParallelization

        self.inner = DaskParallelization(client)
        self.client = client

    def __call__(self, f, X):
        jobs = [self.client.submit(f, x, pure=False) for x in X]
        out = []
        for job, x in zip(jobs, X):
            try:
                out.append(job.result())
            except Exception as exc:
                out.append(f.failure(x, f"{type(exc).__name__}: {exc}"))
        return out


def make_runner(*, workers: int | None = None, dask=None, timeout: float | None = None):
    """A runner with pymoo's interface ``runner(f, X)``: a Dask cluster (``dask``: an
    address or a ``dask.distributed.Client``, through pymoo's ``DaskParallelization``),
    local worker processes (``workers`` > 1 or a ``timeout``:
    :class:`qaev.runtime.isolation.IsolatedRunner`, which survives crashed and hung candidates), or
    None for in-process evaluation. Each evaluation uses one ONNX Runtime thread.
    Call ``close()`` on a local runner when done."""
    if dask is not None:
        from dask.distributed import Client

        return _SafeDask(dask if isinstance(dask, Client) else Client(dask))
    if (workers and workers > 1) or timeout is not None:
        from qaev.runtime.isolation import IsolatedRunner

        return IsolatedRunner(workers=workers or 1, timeout=timeout)
    return None
