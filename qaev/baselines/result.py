"""What a baseline returns: evaluated points and the full evaluations it spent."""
from __future__ import annotations

from dataclasses import dataclass, field

from qaev.runtime.store import Record

__all__ = ["Point", "MethodResult"]


@dataclass(frozen=True, kw_only=True)
class Point:
    """One configuration a method reports, with its values on the search data.

    Attributes:
        label: what the point is (``W8A8``, ``step 3``, ``budget 0.05 MB``...).
        objectives: objective name -> value (``acc_drop`` measured, ``size_mb`` exact,
            ``est_*`` estimated).
        metric: the measured metric.
        config: the resolved :class:`~qaev.config.QuantConfig` dict, or None for models
            made by another tool (then ``model`` holds the file's bytes).
        key: the store key of the config, when it has one.
        model: the serialised model of a point without a config (not in reports).
        error: why the evaluation failed, or None.
        extra: method-specific details (tool options, path step, budget).
    """

    label: str
    objectives: dict
    metric: float | None
    config: dict | None = None
    key: str | None = None
    model: bytes | None = field(default=None, repr=False)
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the point was evaluated without error."""
        return self.error is None

    @classmethod
    def from_record(cls, record: Record, label: str, **extra) -> "Point":
        """A point of an evaluated :class:`~qaev.runtime.store.Record`."""
        return cls(label=label, objectives=dict(record.objectives), metric=record.metric, config=record.config,
                   key=record.key, error=record.error, extra=dict(extra))

    def to_dict(self) -> dict:
        """JSON-ready dict (without the model bytes)."""
        return {"label": self.label, "objectives": self.objectives, "metric": self.metric, "key": self.key,
                "error": self.error, "extra": self.extra, "has_config": self.config is not None}


@dataclass(frozen=True, kw_only=True)
class MethodResult:
    """Everything one method produced.

    Attributes:
        method: its name; points: what it reports, in the order produced.
        evaluations: distinct full evaluations (model built and measured on the search
            data) it asked for, cached or not.
        wall_s: wall time of the method.
        notes: what the method had to assume or skip.
        passes: samples run over the size of the search data (a full evaluation is one
            pass); set by methods that measure some candidates on part of the data.
    """

    method: str
    points: tuple[Point, ...]
    evaluations: int
    wall_s: float
    notes: tuple[str, ...] = ()
    passes: float | None = None
