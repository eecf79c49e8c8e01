"""The one description of a run: model and data, search space, objectives, constraints,
hardware, evaluation settings and search settings, as frozen dataclasses.

The CLI parses its options into a :class:`RunSpec`; :func:`qaev.search.build.build_problem`
turns one into a ready problem; workers (processes, Dask) and ``--resume`` rebuild from
it; a run directory records it (``settings.json``). Dicts exist only at the JSON edge
(:meth:`RunSpec.to_dict`, :meth:`RunSpec.from_dict`, which rejects unknown keys by path).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from qaev.config import CalibMethod, Granularity, Rounding, ScaleRule, WeightRange
from qaev.data.parts import Parts
from qaev.data.tasks import DataOptions
from qaev.errors import ConfigError
from qaev.evaluation.scoring import NEAR_Z
from qaev.evaluation.staging import Staging
from qaev.model.session import ORT_LEVELS

__all__ = ["ProblemSource", "ModelSource", "SpaceSpec", "EvalSettings", "SearchSettings", "RunSpec", "SPEC_VERSION"]

SPEC_VERSION = 1
#: Whether a search lets the predictor choose its offspring unless told otherwise (on: on
#: the bundled digits problem it reaches a given front quality in about half the real
#: evaluations; ``tests/search/test_predictor.py``).
PREDICTOR_DEFAULT = True


def _check_keys(cls, data, where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)}, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")


def _build(cls, data, where: str, **convert):
    _check_keys(cls, data, where)
    values = {k: (convert[k](v) if k in convert and v is not None else v) for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class ProblemSource:
    """A registered problem (``qaev problems``) and its options (``calib``, ``eval``,
    ``seed``, ``data``, ...: those of :func:`qaev.problems.problem_parts`)."""

    problem: str
    options: Mapping = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", MappingProxyType({k: v for k, v in dict(self.options).items()
                                                              if v is not None}))

    def load(self) -> Parts:
        """The problem's model, data splits and metric."""
        from qaev.problems.registry import problem_parts

        return problem_parts(self.problem, **self.options)

    def to_dict(self) -> dict:
        return {"problem": self.problem, "options": {k: (str(v) if isinstance(v, Path) else v)
                                                     for k, v in self.options.items()}}


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """A float ONNX model file and the data options that split its data."""

    model: str
    data: DataOptions = field(default_factory=DataOptions)

    def load(self) -> Parts:
        """The model, its calibration and evaluation splits and the metric."""
        from qaev.data.tasks import load_task
        from qaev.model.graph import load_model

        model = load_model(self.model)
        task = load_task(self.data, model)
        return Parts(model, task.calib, task.eval, task.metric)

    def to_dict(self) -> dict:
        data = {k: (str(v) if isinstance(v, Path) else (list(v) if isinstance(v, tuple) else v))
                for k, v in asdict(self.data).items()}
        return {"model": self.model, "data": data}


def _source(data) -> ProblemSource | ModelSource:
    if isinstance(data, Mapping) and "problem" in data:
        return _build(ProblemSource, data, "source")
    if isinstance(data, Mapping) and "model" in data:
        convert = {"data": lambda d: _build(DataOptions, d, "source.data", data=Path,
                                            mean=tuple, std=tuple)}
        return _build(ModelSource, data, "source", **convert)
    raise ConfigError("source: expected {problem: NAME, options: {...}} or {model: PATH, data: {...}}")


@dataclass(frozen=True, kw_only=True)
class SpaceSpec:
    """What the search may choose (the options of :class:`~qaev.search.space.SearchSpace`
    without the model's layers). A field set to None is filled from the run's preset and the
    model's family when the problem is built (:func:`qaev.search.defaults.default_space`).
    ``nbits_accuracy`` is the ``MatMulNBits`` accuracy level of every candidate
    (:attr:`qaev.config.QuantConfig.nbits_accuracy`), not a gene."""

    w_bits: tuple = (2, 4, 8)
    acts: tuple = ("a8", "float")
    granularities: tuple = (Granularity.PER_CHANNEL.value,)
    symmetric: tuple = (True,)
    calibrations: tuple = (CalibMethod.MINMAX.value,)
    scale_rules: tuple = (ScaleRule.FLOAT.value,)
    roundings: tuple = (Rounding.NEAREST.value,)
    bias_corrections: tuple = (False,)
    weight_range: str = WeightRange.MINMAX.value
    exclude: tuple = ()
    frozen: Mapping = field(default_factory=dict)
    nbits_accuracy: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name == "frozen":
                object.__setattr__(self, f.name, MappingProxyType(dict(value)))
            elif f.name not in ("weight_range", "nbits_accuracy"):
                object.__setattr__(self, f.name, tuple(getattr(v, "value", v) for v in value))
        object.__setattr__(self, "weight_range", getattr(self.weight_range, "value", self.weight_range))

    @property
    def complete(self) -> bool:
        """Whether every field is set (nothing left to the defaults)."""
        return all(getattr(self, f.name) is not None for f in fields(self))

    def given(self) -> dict:
        """The fields that are set."""
        return {k: v for k, v in self.options().items() if v is not None}

    def options(self) -> dict:
        """Keyword options of :class:`~qaev.search.space.SearchSpace`."""
        return {f.name: (dict(getattr(self, f.name)) if f.name == "frozen" and getattr(self, f.name) is not None
                         else getattr(self, f.name)) for f in fields(self)}

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.options().items()}


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """How candidates are measured.

    Attributes:
        metric: the metric (None: the source's).
        ort_level: ONNX Runtime optimisation level of every session (accuracy shifts by
            tenths between levels; one per run).
        threads: ORT intra-op threads per evaluation.
        staging: race or screen on subsets (:class:`~qaev.evaluation.staging.Staging`).
        validation: share of the evaluation split set apart (seeded) to choose the shipped
            point on, when the source has no validation split of its own (0: none).
    """

    metric: str | None = None
    ort_level: str = "extended"
    threads: int = 1
    staging: Staging | None = None
    validation: float = 0.0

    def __post_init__(self) -> None:
        if self.ort_level not in ORT_LEVELS:
            raise ConfigError(f"ort_level: {self.ort_level!r} is not one of {', '.join(ORT_LEVELS)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"threads: expected a positive integer, got {self.threads!r}")
        if not isinstance(self.validation, (int, float)) or not 0.0 <= self.validation < 0.9:
            raise ConfigError(f"validation: expected a share in [0, 0.9), got {self.validation!r}")

    def to_dict(self) -> dict:
        staging = None if self.staging is None else {k: (v.value if hasattr(v, "value") else
                                                         (list(v) if isinstance(v, tuple) else v))
                                                     for k, v in asdict(self.staging).items()}
        return {"metric": self.metric, "ort_level": self.ort_level, "threads": self.threads, "staging": staging,
                "validation": self.validation}


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """The algorithm and its budget.

    Attributes:
        algorithm: ``auto`` (NSGA-II up to three objectives, NSGA-III beyond), ``nsga2``, ``nsga3``.
        pop: population size.
        generations: generations to run (a resumed run may ask for more).
        seed: the search's seed.
        sensitivity: ``noise[:N]`` or a ``qaev sensitivity --out`` file seeding half of the
            first population along the greedy lowering path (None: the free weight-error proxy).
        sensitivity_sha256: the file's hash, recorded so a resume seeds the same way.
        time_minutes: wall-time budget of the whole run (None: ``generations`` decide).
        predictor: a drop model refitted on every measured candidate chooses each
            generation's offspring among many (:mod:`qaev.search.surrogate`), where the
            problem allows it (acc_drop an objective, every other one computed, not measured).
        refine: rebuild the recommended point with block reconstruction at the end (needs
            PyTorch; :mod:`qaev.runtime.refining`), within ``time_minutes`` when that is set.
        near: the front also keeps the points it beats by less than this many standard
            errors of their drop (:attr:`qaev.evaluation.scoring.Scoring.near`; 0: the
            non-dominated points alone).
    """

    algorithm: str = "auto"
    pop: int = 20
    generations: int = 10
    seed: int = 0
    sensitivity: str | None = None
    sensitivity_sha256: str | None = None
    time_minutes: float | None = None
    predictor: bool = PREDICTOR_DEFAULT
    refine: bool = False
    near: float = NEAR_Z

    def __post_init__(self) -> None:
        if self.algorithm not in ("auto", "nsga2", "nsga3"):
            raise ConfigError(f"algorithm: {self.algorithm!r} is not one of auto, nsga2, nsga3")
        for name in ("pop", "generations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: expected a non-negative integer, got {self.seed!r}")
        for name in ("predictor", "refine"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        if self.time_minutes is not None and not (isinstance(self.time_minutes, (int, float))
                                                  and 0 < self.time_minutes < float("inf")):
            raise ConfigError(f"time: expected a positive number of minutes, got {self.time_minutes!r}")
        if isinstance(self.near, bool) or not (isinstance(self.near, (int, float)) and 0 <= self.near < float("inf")):
            raise ConfigError(f"near: expected a non-negative number of standard errors, got {self.near!r}")


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """Everything that decides a run's numbers.

    Attributes:
        source: the model and data (:class:`ProblemSource` or :class:`ModelSource`).
        space: what may be chosen.
        objectives: objective names (:mod:`qaev.search.objectives`).
        constraints: bound name (``max_drop``, ...) -> bound.
        hardware: a hardware table name or YAML path, or None.
        evaluation: how candidates are measured.
        search: the algorithm and its budget.
        preset: the goal whose defaults fill the space's unset fields (``size``,
            ``latency-host``, ``npu-int8``: :data:`qaev.search.defaults.PRESETS`).
        version: schema version.
    """

    source: ProblemSource | ModelSource
    space: SpaceSpec = field(default_factory=SpaceSpec)
    objectives: tuple = ("acc_drop", "size_mb")
    constraints: Mapping = field(default_factory=dict)
    hardware: str | None = None
    evaluation: EvalSettings = field(default_factory=EvalSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    preset: str = "size"
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        if self.version != SPEC_VERSION:
            raise ConfigError(f"version: {self.version!r} is not supported (expected {SPEC_VERSION})")
        object.__setattr__(self, "objectives", tuple(self.objectives))
        object.__setattr__(self, "constraints", MappingProxyType(dict(self.constraints)))
        for name, bound in self.constraints.items():
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                raise ConfigError(f"--{str(name).replace('_', '-')}: expected a finite number, got {bound!r}")

    def __reduce__(self):
        # pickled (to workers) through the JSON form: the read-only mappings do not pickle
        return RunSpec.from_dict, (self.to_dict(),)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (``settings.json``)."""
        return {"version": self.version, "source": self.source.to_dict(), "space": self.space.to_dict(),
                "objectives": list(self.objectives), "constraints": dict(self.constraints), "hardware": self.hardware,
                "evaluation": self.evaluation.to_dict(), "search": asdict(self.search), "preset": self.preset}

    def key(self) -> str:
        """Identity of the spec (a worker builds one problem per key)."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = "settings") -> "RunSpec":
        """Build from :meth:`to_dict`'s form; unknown keys are rejected by path."""
        _check_keys(cls, data, where)
        staging = lambda d: _build(Staging, d, f"{where}.evaluation.staging", fractions=tuple)  # noqa: E731
        converters = {
            "source": _source,
            "space": lambda d: _build(SpaceSpec, d, f"{where}.space"),
            "evaluation": lambda d: _build(EvalSettings, d, f"{where}.evaluation", staging=staging),
            "search": lambda d: _build(SearchSettings, d, f"{where}.search"),
        }
        return _build(cls, data, where, **converters)
