"""Ready-made quantization problems on real models and data (installed as ``qaev.problems``).

Like pymoo's ``get_problem``: ``get_problem("digits")`` returns a ready
:class:`~qaev.search.problem.QuantizationProblem`. One module per problem defines its
``SPEC``; :mod:`.registry` lists them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from qaev.problems.registry import PROBLEMS, list_problems, problem_model_path, problem_parts, problem_spec

__all__ = ["PROBLEMS", "get_problem", "list_problems", "problem_model_path", "problem_parts", "problem_spec"]


def get_problem(name: str, *, objectives: Sequence[str] = ("acc_drop", "size_mb"), hardware=None,
                constraints: Mapping[str, float] | None = None, space: Mapping | None = None,
                calib: int | None = None, eval: int | None = None, store=None, threads: int = 1,
                staging=None, runner=None, ort_level: str = "extended", **options):
    """A ready :class:`~qaev.search.problem.QuantizationProblem` (built from a
    :class:`~qaev.search.spec.RunSpec`, so workers and resumed runs rebuild the same one).

    Args:
        name: a key of :data:`PROBLEMS` (``qaev problems`` lists them).
        objectives: objective names.
        hardware: target table name or YAML path for estimated objectives.
        constraints: e.g. ``{"max_drop": 1.0}``.
        space: keyword options of :class:`~qaev.search.space.SearchSpace` (``w_bits``, ``acts``, ...).
        calib, eval: subset sizes.
        store: an :class:`~qaev.runtime.store.EvaluationStore` (persist to resume).
        threads: ORT threads per evaluation.
        staging: a :class:`~qaev.evaluation.staging.Staging` (subset first, finish promising ones).
        runner: a pymoo runner from :func:`qaev.runtime.parallel.make_runner`.
        ort_level: ONNX Runtime optimisation level of every session.
        **options: the problem's own options (``seed``, ``data``, ...).

    Example:
        >>> problem = get_problem("digits")
        >>> problem.n_obj, problem.objectives
        (2, ('acc_drop', 'size_mb'))
    """
    from qaev.search.build import build_problem
    from qaev.search.spec import EvalSettings, ProblemSource, RunSpec, SpaceSpec

    spec = RunSpec(source=ProblemSource(problem=name, options={"calib": calib, "eval": eval, **options}),
                   space=SpaceSpec(**dict(space or {})), objectives=tuple(objectives),
                   constraints=dict(constraints or {}), hardware=hardware if isinstance(hardware, str) else None,
                   evaluation=EvalSettings(threads=threads, staging=staging, ort_level=ort_level))
    return build_problem(spec, store=store, runner=runner, table=None if isinstance(hardware, str) else hardware)
