"""The one way a run is assembled: :func:`build_problem` turns a :class:`~qaev.search.spec.RunSpec`
into a ready :class:`~qaev.search.problem.QuantizationProblem` (the CLI, ``get_problem``,
parallel workers and resumed runs all come through here)."""
from __future__ import annotations

from qaev.evaluation.evaluator import Evaluator
from qaev.quantize import Quantizer
from qaev.search.problem import QuantizationProblem
from qaev.search.space import SearchSpace
from qaev.search.spec import RunSpec

__all__ = ["build_problem", "build_local"]


def build_problem(spec: RunSpec, *, store=None, runner=None, table=None, parts=None) -> QuantizationProblem:
    """The problem ``spec`` describes, calibrated and ready.

    Args:
        spec: the run.
        store: the evaluation memo (in memory by default).
        runner: a pymoo runner (:func:`qaev.runtime.parallel.make_runner`); its workers
            rebuild the problem from ``spec`` with :func:`build_local`.
        table: a :class:`~qaev.hardware.HardwareTable` object instead of ``spec.hardware``.
        parts: the source's :class:`~qaev.data.parts.Parts`, when already loaded.
    """
    parts = parts if parts is not None else spec.source.load()
    settings = spec.evaluation
    quantizer = Quantizer.calibrated(parts.model, parts.calib, threads=settings.threads)
    evaluator = Evaluator(parts.model, parts.eval, metric=settings.metric or parts.metric, threads=settings.threads,
                          ort_level=settings.ort_level)
    remote = None
    if runner is not None:
        from qaev.runtime.parallel import RemoteEvaluation

        remote = RemoteEvaluation(spec, build=build_local)
    problem = QuantizationProblem(
        quantizer, evaluator, space=SearchSpace(layers=quantizer.layers, **spec.space.options()),
        objectives=spec.objectives, constraints=dict(spec.constraints),
        hardware=table if table is not None else spec.hardware, store=store, staging=settings.staging,
        runner=runner, remote=remote)
    problem.spec = spec
    problem.parts = parts
    return problem


def build_local(spec: RunSpec) -> QuantizationProblem:
    """The problem of ``spec`` evaluating in this process (what a worker builds)."""
    return build_problem(spec)
