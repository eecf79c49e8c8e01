"""The append-only memo of evaluations: effective-config hash -> objectives.

Kept in memory and, given a path, as JSON lines appended and flushed to disk after every
evaluation, so an interrupted run loses nothing finished and a rerun is free. A torn last
line (a crash mid-write) is ignored on reload.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

__all__ = ["Record", "EvaluationStore"]


@dataclass(frozen=True)
class Record:
    """One evaluated candidate.

    Attributes:
        key: hash of the effective config.
        objectives: objective name -> value (None when the evaluation failed).
        metric: the measured metric, when measured.
        config: the resolved config as its on-disk dict (with calibrated ranges).
        seconds: wall time of the evaluation.
        error: why the candidate failed, or None.
    """

    key: str
    objectives: dict
    metric: float | None
    config: dict
    seconds: float = 0.0
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the candidate was evaluated without error."""
        return self.error is None


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class EvaluationStore:
    """Memo of :class:`Record` by key, optionally persisted to ``path`` (JSON lines)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._records: dict[str, Record] = {}
        self.hits = 0
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        for line in self.path.read_text().splitlines():
            try:
                data = json.loads(line)
                record = Record(**data)
            except (json.JSONDecodeError, TypeError):
                continue  # a torn final line from an interrupted write
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
        data = asdict(record)
        data["objectives"] = {k: _clean(v) for k, v in record.objectives.items()}
        line = json.dumps(data, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def records(self) -> Iterator[Record]:
        """All records in insertion order."""
        return iter(list(self._records.values()))
