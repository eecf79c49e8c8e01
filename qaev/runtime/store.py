"""The append-only memo of evaluations: effective-config hash -> objectives.

Kept in memory and, given a path, as JSON lines appended and flushed to disk after every
evaluation, so an interrupted run loses nothing finished and a rerun is free. Records are
typed (:class:`Record`, :class:`Timings`, :class:`Stage`, :class:`Screen`); dicts exist only
at the JSON edge (:meth:`Record.to_dict`, :meth:`Record.from_dict`). A torn last line (a
crash mid-write) is skipped and counted, and the next append starts on a new line.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Iterator, Mapping

from qaev.files import append_line, write_error

__all__ = ["Record", "Timings", "Stage", "StageKind", "Screen", "EvaluationStore", "RecordError"]


class RecordError(ValueError):
    """A stored record that is not valid (missing or non-finite values, unknown fields)."""


@dataclass(frozen=True)
class Timings:
    """Where one evaluation's seconds went (zero where a step did not run)."""

    build_s: float = 0.0      # building the QDQ graph
    session_s: float = 0.0    # opening the ONNX Runtime session
    inference_s: float = 0.0  # running the data
    feed_s: float = 0.0       # screening on the simulator: the inputs standing for the candidate

    def plus(self, other: "Timings") -> "Timings":
        """Field-wise sum."""
        return Timings(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


class StageKind(str, Enum):
    """Why a record carries a partial measurement."""

    SUBSET = "subset"  # stopped early in a race: dominated even with its margin (never on a front)
    SCREEN = "screen"  # measured on the first stage only by a screening search (finished later, or not)


@dataclass(frozen=True)
class Stage:
    """A partial measurement: the drop in the record's objectives is over the first ``n`` items."""

    kind: StageKind
    n: int
    margin: float = 0.0  # z standard errors of the drop at the stop

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StageKind(self.kind))


@dataclass(frozen=True)
class Screen:
    """A screening search's first-stage measurement (kept after the candidate is finished).

    Attributes:
        drop: first-stage metric drop.
        margin: z standard errors of it.
        items: per-item drops (metrics that are means of per-item scores), for paired tests.
        simulated: screened on the simulator instead of the candidate's own model.
    """

    drop: float
    margin: float
    items: tuple[float, ...] | None = None
    simulated: bool = False

    def __post_init__(self) -> None:
        if self.items is not None:
            object.__setattr__(self, "items", tuple(float(v) for v in self.items))


@dataclass(frozen=True)
class Record:
    """One evaluated candidate.

    Attributes:
        key: hash of the effective config.
        objectives: objective name -> value (empty when the evaluation failed).
        metric: the measured metric, when measured.
        config: the resolved config as its on-disk dict (with calibrated ranges).
        seconds: wall time of the evaluation.
        error: why the candidate failed, or None.
        timings: where the seconds went.
        stage: set when the objectives hold a partial measurement (see :class:`Stage`).
        screen: a screening search's first-stage measurement.
        reused: items of the first stage whose outputs were reused when finishing.
        search_metric: the metric the search measured on the evaluation graph, when the
            record's ``metric`` was re-measured on the exported model.
        validation_metric: the exported model's metric on the validation split.
        validation_drop: its drop against the float model there.
        validation_se: the paired standard error of that drop (float and the point on the
            same items; :meth:`~qaev.evaluation.evaluator.Evaluator.head_drop`).
        limit_s: the time limit the evaluation ran past (a timed-out candidate, evaluated
            again by a run with a longer limit or none), else None.
        drop_se: the paired standard error of the measured drop (the candidate and the float
            model on the same items; :meth:`~qaev.evaluation.evaluator.Evaluator.head_drop`),
            when measured on the whole split.
    """

    key: str
    objectives: dict
    metric: float | None
    config: dict
    seconds: float = 0.0
    error: str | None = None
    timings: Timings = field(default_factory=Timings)
    stage: Stage | None = None
    screen: Screen | None = None
    reused: int = 0
    search_metric: float | None = None
    validation_metric: float | None = None
    validation_drop: float | None = None
    validation_se: float | None = None
    limit_s: float | None = None
    drop_se: float | None = None

    @property
    def ok(self) -> bool:
        """True when the candidate was evaluated without error."""
        return self.error is None

    @property
    def final(self) -> bool:
        """True when the objectives hold a full-set measurement."""
        return self.stage is None

    def to_dict(self) -> dict:
        """The JSON line form (non-finite objective values written as null)."""
        data = asdict(self)
        data["objectives"] = {k: _finite_or_none(v) for k, v in self.objectives.items()}
        if self.stage is not None:
            data["stage"]["kind"] = self.stage.kind.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "Record":
        """A record from its JSON form, validated.

        Raises:
            RecordError: unknown or missing fields, or a successful record whose objectives
                are missing or not finite numbers.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"expected an object, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise RecordError(f"unknown field(s) {', '.join(sorted(unknown))}")
        try:
            values = dict(data)
            values["timings"] = Timings(**(values.get("timings") or {}))
            values["stage"] = Stage(**values["stage"]) if values.get("stage") else None
            values["screen"] = Screen(**values["screen"]) if values.get("screen") else None
            record = cls(**values)
        except (TypeError, ValueError) as exc:
            raise RecordError(str(exc)) from None
        if not isinstance(record.key, str) or not isinstance(record.objectives, dict):
            raise RecordError("key must be a string and objectives a mapping")
        if record.ok and (not record.objectives or not all(_is_finite(v) for v in record.objectives.values())):
            raise RecordError(f"record {record.key}: objectives missing or not finite numbers")
        _check_values(record)
        return record


def _check_values(record: Record) -> None:
    """The fields besides the objectives: numbers finite, the error a text, and the config
    a valid config whose hash is the record's key (a record is never trusted)."""
    if record.error is not None and not isinstance(record.error, str):
        raise RecordError(f"record {record.key}: error must be a text")
    for name in ("metric", "drop_se", "search_metric", "validation_metric", "validation_drop", "validation_se",
                 "limit_s"):
        value = getattr(record, name)
        if value is not None and not _is_finite(value):
            raise RecordError(f"record {record.key}: {name} must be a finite number")
    if not _is_finite(record.seconds) or not all(_is_finite(getattr(record.timings, f.name))
                                                 for f in fields(record.timings)):
        raise RecordError(f"record {record.key}: seconds must be finite numbers")
    if not isinstance(record.reused, int) or isinstance(record.reused, bool) or record.reused < 0:
        raise RecordError(f"record {record.key}: reused must be a count")
    from qaev.config import QuantConfig
    from qaev.errors import ConfigError

    try:
        layers = record.config.get("layers") if isinstance(record.config, Mapping) else None
        shared = ({name: _layer_config(cfg) for name, cfg in layers.items()}
                  if isinstance(layers, Mapping) else layers)  # layers at the same settings share one object
        config = QuantConfig.from_dict({**record.config, "layers": shared} if shared is not None else record.config)
    except (ConfigError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"record {record.key}: config is not valid ({exc})") from None
    # a record's key is its config's before calibration resolved the ranges (or as stored)
    bare = QuantConfig(layers=config.layers, calibration=config.calibration, scale_rule=config.scale_rule,
                       rounding_inputs=config.rounding_inputs)
    if record.key != bare.key() and record.key != config.key():
        raise RecordError(f"record {record.key}: the key is not its config's")


_LAYER_CONFIGS: dict = {}


def _layer_config(data):
    """The :class:`~qaev.config.LayerConfig` of a layer's settings, made once per distinct
    settings (reading a long memo validates thousands of identical ones)."""
    from qaev.config import LayerConfig

    if not isinstance(data, Mapping):
        return data  # QuantConfig says what is wrong with it
    key = json.dumps(data, sort_keys=True)
    cfg = _LAYER_CONFIGS.get(key)
    if cfg is None:
        if len(_LAYER_CONFIGS) > 10_000:
            _LAYER_CONFIGS.clear()
        cfg = _LAYER_CONFIGS[key] = LayerConfig.from_dict(data)
    return cfg


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EvaluationStore:
    """Memo of :class:`Record` by key, optionally persisted to ``path`` (JSON lines).

    Attributes:
        hits: lookups answered from the memo.
        skipped: lines of the file that could not be read back (a torn last line, a damaged
            or invalid record); they are left in the file and ignored.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._records: dict[str, Record] = {}
        self.hits = 0
        self.skipped = 0
        self._torn = False
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        self._torn = bool(raw) and not raw.endswith(b"\n")
        for line in raw.decode("utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = Record.from_dict(json.loads(line))
            except (ValueError, RecursionError):  # JSONDecodeError and RecordError are ValueErrors
                self.skipped += 1
                continue
            self._records[record.key] = record

    def get(self, key: str) -> Record | None:
        """The record of ``key`` (counted as a cache hit), or None."""
        record = self._records.get(key)
        if record is not None:
            self.hits += 1
        return record

    def peek(self, key: str) -> Record | None:
        """The record of ``key`` without counting a cache hit."""
        return self._records.get(key)

    def put(self, record: Record) -> None:
        """Remember ``record`` and append it to disk before returning."""
        self._records[record.key] = record
        if self.path is None:
            return
        line = json.dumps(record.to_dict(), sort_keys=True) + "\n"
        if self._torn:  # the last line was cut short: start a fresh one
            line = "\n" + line
            self._torn = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        append_line(self.path, line)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def records(self) -> Iterator[Record]:
        """All records in insertion order."""
        return iter(list(self._records.values()))
