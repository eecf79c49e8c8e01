"""The problem registry: name -> how to build its model, data and metric."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from qaev.errors import ConfigError

__all__ = ["ProblemSpec", "PROBLEMS", "get_problem", "list_problems", "problem_model_path", "problem_parts", "Parts"]


@dataclass(frozen=True)
class Parts:
    """What a problem is made of.

    Attributes:
        model: the float model.
        calib: calibration data.
        eval: the data the search measures on.
        metric: the metric's name.
        test: held-out data the search never sees (None: benchmarks split ``eval``).
        full: the data on which the float reference figure is quoted (``qaev evaluate --problem``).
    """

    model: object
    calib: object
    eval: object
    metric: str
    test: object = None
    full: object = None


@dataclass(frozen=True)
class ProblemSpec:
    """A registered problem: a description, a builder of its :class:`Parts`, and where its
    float model file is (without loading any data)."""

    name: str
    description: str
    build: Callable[..., Parts]
    model_path: Callable[[], object]


def _digits(*, calib: int | None = None, eval: int | None = None, **_) -> Parts:
    from qaev.data import digits_model_path, load_digits_split
    from qaev.model.graph import load_model

    c, e = load_digits_split("calib"), load_digits_split("test")
    return Parts(load_model(digits_model_path()), c.head(calib) if calib else c, e.head(eval) if eval else e, "top1",
                 full=e)


def _digits_model():
    from qaev.data import digits_model_path

    return digits_model_path()


def _lite0_model():
    from qaev.problems.efficientnet_lite import lite0_model_path

    return lite0_model_path()


def _minilm_model():
    from qaev.problems.minilm import minilm_model_path

    return minilm_model_path()


def _lite0(**options) -> Parts:
    from qaev.problems.real import lite0_parts

    return lite0_parts(**options)


def _lite0_heldout(**options) -> Parts:
    from qaev.problems.real import lite0_heldout_parts

    return lite0_heldout_parts(**options)


def _minilm(**options) -> Parts:
    from qaev.problems.real import minilm_parts

    return minilm_parts(**options)


PROBLEMS: dict[str, ProblemSpec] = {
    "digits": ProblemSpec("digits", "bundled CNN on scikit-learn digits (300 calib / 497 test), top-1", _digits, _digits_model),
    "efficientnet-lite0": ProblemSpec(
        "efficientnet-lite0", "EfficientNet-Lite0 (ImageNet weights) on an ImageNet folder (default "
        "imagenet-val-1300: 200 calib / 1100 eval), top-1", _lite0, _lite0_model),
    "efficientnet-lite0-heldout": ProblemSpec(
        "efficientnet-lite0-heldout", "EfficientNet-Lite0: calib + search on imagenet-samples (1000 train-split "
        "images: 200 calib / 800 search), held-out test on imagenet-val-1300 (1300 val images), top-1",
        _lite0_heldout, _lite0_model),
    "minilm-l6-stsb": ProblemSpec(
        "minilm-l6-stsb", "all-MiniLM-L6-v2 sentence embeddings on STS-B: calib + search on dev, "
        "held-out test (1379 pairs), Spearman x100", _minilm, _minilm_model),
}


def list_problems() -> list[tuple[str, str]]:
    """(name, description) of every registered problem."""
    return [(p.name, p.description) for p in PROBLEMS.values()]


def _spec(name: str) -> ProblemSpec:
    if name not in PROBLEMS:
        raise ConfigError(f"problem {name!r} is not one of {', '.join(PROBLEMS)}")
    return PROBLEMS[name]


def problem_parts(name: str, **options) -> Parts:
    """Model, data and metric of problem ``name``."""
    return _spec(name).build(**options)


def problem_model_path(name: str):
    """The float model file of problem ``name`` (exported on first use), no data loaded."""
    return _spec(name).model_path()


def get_problem(name: str, *, objectives: Sequence[str] = ("acc_drop", "size_mb"), hardware=None,
                constraints: Mapping[str, float] | None = None, space: Mapping | None = None,
                calib: int | None = None, eval: int | None = None, store=None, threads: int = 1,
                staging=None, runner=None, **options):
    """A ready :class:`~qaev.search.problem.QuantizationProblem`.

    Args:
        name: a key of :data:`PROBLEMS` (``qaev problems`` lists them).
        objectives: objective names.
        hardware: target table for estimated objectives.
        constraints: e.g. ``{"max_drop": 1.0}``.
        space: keyword options of :class:`~qaev.search.space.SearchSpace` (``w_bits``, ``acts``, ...).
        calib, eval: subset sizes.
        store: an :class:`~qaev.runtime.store.EvaluationStore` (persist to resume).
        threads: ORT threads per evaluation.
        staging: a :class:`~qaev.evaluation.staging.Staging` (subset first, finish promising ones).
        runner: a pymoo runner from :func:`qaev.runtime.parallel.make_runner`.

    Example:
        >>> problem = get_problem("digits")
        >>> problem.n_obj, problem.objectives
        (2, ('acc_drop', 'size_mb'))
    """
    from dataclasses import asdict

    from qaev.evaluation.evaluator import Evaluator
    from qaev.runtime.parallel import Recipe
    from qaev.search.problem import QuantizationProblem
    from qaev.quantize import Quantizer
    from qaev.search.space import SearchSpace

    parts = problem_parts(name, calib=calib, eval=eval, **options)
    quantizer = Quantizer.calibrated(parts.model, parts.calib, threads=threads)
    evaluator = Evaluator(parts.model, parts.eval, metric=parts.metric, threads=threads)
    recipe = Recipe(problem=name, problem_options={"calib": calib, "eval": eval, **options}, metric=parts.metric,
                    objectives=tuple(objectives), constraints=dict(constraints or {}),
                    hardware=hardware if isinstance(hardware, str) or hardware is None else None,
                    space=dict(space or {}), staging=asdict(staging) if staging is not None else None)
    return QuantizationProblem(quantizer, evaluator, space=SearchSpace(layers=quantizer.layers, **dict(space or {})),
                               objectives=objectives, constraints=constraints, hardware=hardware, store=store,
                               staging=staging, runner=runner, recipe=recipe)
