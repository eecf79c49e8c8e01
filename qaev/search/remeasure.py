"""The end of a search: every front point re-measured on the file a user ships."""
from __future__ import annotations

from dataclasses import dataclass, replace

from qaev.evaluation.latency import SideBySide, side_by_side
from qaev.runtime.store import Record

__all__ = ["measure_exported", "remeasure_front", "Remeasured", "FLOAT_NAME"]

#: The float model's name in :attr:`Remeasured.host_latency` (front points go by their keys).
FLOAT_NAME = "float"


@dataclass(frozen=True)
class Remeasured:
    """A front re-measured on its exported files.

    Attributes:
        front: the records, their ``metric`` and ``acc_drop`` those of the exported files.
        host_latency: the exported files' host latency at batch 1 beside the float
            model's (keyed by record key and :data:`FLOAT_NAME`; measured), or None.
        file_bytes: record key -> the length of its exported file.
    """

    front: list[Record]
    host_latency: SideBySide | None
    file_bytes: dict[str, int]


def _with_exported_metric(problem, record: Record, data: bytes) -> Record:
    measured = problem.evaluator.measure(data, keep_outputs=True)
    value = measured.value
    objectives = {**record.objectives, "acc_drop": problem.evaluator.drop(value)}
    checked = {"drop_se": problem.evaluator.head_drop(measured.outputs)[1]}
    validator = getattr(problem, "validator", None)
    if validator is not None:
        measured = validator.measure(data, keep_outputs=True)
        checked |= {"validation_metric": measured.value, "validation_drop": validator.drop(measured.value),
                   "validation_se": validator.head_drop(measured.outputs)[1]}
    return replace(record, metric=value, objectives=objectives, search_metric=record.metric, **checked)


def remeasure_front(problem, front: list[Record], *, progress=None, latency: bool = True,
                    rounds: int = 3, repeats: int = 20) -> Remeasured:
    """Re-measure every front point on the file a user ships (:func:`qaev.quantize.export_model`).

    The metric is measured on the search split and, when the problem has one, on the
    validation split (only when ``acc_drop`` is an objective). Where a layer's weights are
    stored as native INT4 with static activations, ONNX Runtime computes the exported
    layer in float while the evaluation graph runs a fused int8 kernel, so the two can round
    a few outputs differently. The reported ``metric`` and ``acc_drop`` are those of the
    exported model (what ``qaev apply`` + ``qaev evaluate`` reproduce exactly); the
    search-time value stays in ``search_metric``.

    Args:
        problem: the searched :class:`qaev.search.problem.QuantizationProblem`.
        front: the records to re-measure.
        progress: called with (done, total) after each point.
        latency: also measure each exported file's host latency at batch 1 (one ORT
            thread, the run's optimisation level) side by side with the float model, in
            ``rounds`` interleaved rounds of ``repeats`` timed runs.
        rounds, repeats: see ``latency``.
    """
    from qaev.config import QuantConfig
    from qaev.quantize import export_model

    measure_metric = "acc_drop" in problem.objectives
    if not measure_metric and not latency:
        return Remeasured(front=list(front), host_latency=None, file_bytes={})
    out, files = [], {FLOAT_NAME: problem.quantizer.model.proto.SerializeToString()}
    for k, record in enumerate(front):
        data = export_model(problem.quantizer, QuantConfig.from_dict(record.config)).SerializeToString()
        out.append(_with_exported_metric(problem, record, data) if measure_metric else record)
        files[record.key] = data
        if progress is not None:
            progress(k + 1, len(front))
    timed = None
    if latency and front:
        evaluator, parts = problem.evaluator, getattr(problem, "parts", None)
        named = getattr(parts, "host_feed", None)  # the problem's own latency input (a decoder's decoding step)
        feed = named if named is not None else next(iter(evaluator.data.batches(batch_size=1)))
        timed = side_by_side(files, feed, reference=FLOAT_NAME, batch=1, rounds=rounds, repeats=repeats,
                             threads=1, level=evaluator.ort_level)
        if named is not None:
            timed = replace(timed, input=parts.host_feed_label or "the problem's latency input")
    return Remeasured(front=out, host_latency=timed,
                      file_bytes={key: len(data) for key, data in files.items() if key != FLOAT_NAME})


def measure_exported(problem, front: list[Record], *, progress=None) -> list[Record]:
    """:func:`remeasure_front` without the latencies: the front with the exported files'
    metrics (unchanged when ``acc_drop`` is not an objective)."""
    return remeasure_front(problem, front, progress=progress, latency=False).front
