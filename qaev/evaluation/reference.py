"""Checks of the float model's outputs before any candidate is measured against them: a
metric that cannot tell candidates apart, or labels that do not belong to the model, are
refused here instead of producing a front of meaningless numbers."""
from __future__ import annotations

import warnings

import numpy as np

from qaev.errors import DataError

__all__ = ["check_reference", "LOPSIDED_SHARE"]

#: Share of the evaluation items the float model's most common prediction may take before
#: a label-free agreement run is warned about (every item: refused).
LOPSIDED_SHARE = 0.9


def _source(data) -> str:
    name = getattr(data, "name", "dataset")
    return "inputs generated from the model's input shapes" if name == "generated" else f"{name!r}"


def _check_labels(reference: np.ndarray, data) -> None:
    labels = np.asarray(data.labels).reshape(-1)
    classes = reference.shape[1] if reference.ndim == 2 else None
    if classes is None:
        return
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{data.name}: class labels must be integers, got {labels.dtype}")
    outside = (labels < 0) | (labels >= classes)
    if outside.any():
        raise DataError(f"{data.name}: {int(outside.sum())} of {labels.size} class indexes lie outside "
                        f"0..{classes - 1}, the classes of the model's output (first: {int(labels[outside][0])})")


def _check_agreement(reference: np.ndarray, data) -> None:
    if reference.ndim < 2 or reference.shape[-1] < 2:
        return
    predicted = np.argmax(reference, axis=-1).reshape(-1)
    counts = np.bincount(predicted, minlength=reference.shape[-1])
    top = int(np.argmax(counts))
    share = counts[top] / max(1, predicted.size)
    if share == 1.0:
        raise DataError(f"the float model predicts class {top} for every one of the {predicted.size} evaluation "
                        f"items ({_source(data)}), so agreement with it scores every candidate 0 or 100; give "
                        "--data with real inputs, or --metric sqnr_db")
    if share >= LOPSIDED_SHARE:
        warnings.warn(f"the float model predicts class {top} for {share:.0%} of the {predicted.size} evaluation "
                      f"items ({_source(data)}): agreement with it measures little; give --data with real inputs, "
                      "or --metric sqnr_db", stacklevel=3)


def check_reference(metric: str, reference: np.ndarray, data) -> None:
    """Refuse (or warn about) a float reference that makes ``metric`` meaningless.

    Raises:
        DataError: top-1/top-5 labels outside the model's classes; agreement where the
            float model predicts one class for every item.
    """
    if metric in ("top1", "top5") and getattr(data, "labels", None) is not None:
        _check_labels(reference, data)
    elif metric == "agreement":
        _check_agreement(reference, data)
