"""The one way a run is assembled: :func:`build_problem` turns a :class:`~qaev.search.spec.RunSpec`
into a ready :class:`~qaev.search.problem.QuantizationProblem` (the CLI, ``get_problem``,
parallel workers and resumed runs all come through here)."""
from __future__ import annotations

from dataclasses import replace

from qaev.evaluation.evaluator import Evaluator
from qaev.quantize import Quantizer
from qaev.search.problem import QuantizationProblem
from qaev.search.space import SearchSpace
from qaev.search.defaults import default_space
from qaev.search.spec import ModelSource, RunSpec

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
    parts = with_validation(parts if parts is not None else spec.source.load(), spec)
    settings = spec.evaluation
    quantizer = Quantizer.calibrated(parts.model, parts.calib, threads=settings.threads)
    evaluator = Evaluator(parts.model, parts.eval, metric=settings.metric or parts.metric, threads=settings.threads,
                          ort_level=settings.ort_level)
    remote = None
    if runner is not None:
        from qaev.runtime.parallel import RemoteEvaluation

        remote = RemoteEvaluation(spec, build=build_local)
    space = spec.space
    if not space.complete:
        space = default_space(quantizer.layers, preset=spec.preset, given=space.given(), has_data=has_data(spec))
    problem = QuantizationProblem(
        quantizer, evaluator, space=SearchSpace(layers=quantizer.layers, **space.options()),
        objectives=spec.objectives, constraints=dict(spec.constraints),
        hardware=table if table is not None else spec.hardware, store=store, staging=settings.staging,
        runner=runner, remote=remote, host_feed=parts.host_feed, near=spec.search.near)
    problem.spec = spec
    problem.parts = parts
    problem.validator = None if parts.validation is None else Evaluator(
        parts.model, parts.validation, metric=evaluator.metric.name, threads=settings.threads,
        ort_level=settings.ort_level)
    return problem


def has_data(spec: RunSpec) -> bool:
    """Whether the run calibrates on real data (not on generated inputs)."""
    source = spec.source
    return not (isinstance(source, ModelSource) and source.data.task == "fidelity" and source.data.data is None)


def with_validation(parts, spec: RunSpec):
    """``parts`` with a validation split: the source's own, else (when the spec asks for a
    share and the evaluation split can spare one) a seeded share of the evaluation split,
    which the search then no longer sees."""
    share = spec.evaluation.validation
    if parts.validation is not None or share <= 0:
        return parts
    n_val = int(round(share * len(parts.eval)))
    if n_val < 2 or len(parts.eval) - n_val < 2:
        return parts
    search, validation = parts.eval.split(n_first=len(parts.eval) - n_val, n_second=n_val, seed=spec.search.seed)
    return replace(parts, eval=search, validation=validation)


def build_local(spec: RunSpec) -> QuantizationProblem:
    """The problem of ``spec`` evaluating in this process (what a worker builds)."""
    return build_problem(spec)
