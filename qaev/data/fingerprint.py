"""A dataset's fingerprint: a hash of every array it feeds, in order, and of its labels."""
from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["fingerprint"]


def _update(digest, name: str, array) -> None:
    arr = np.ascontiguousarray(array)
    digest.update(f"{name}|{arr.dtype.str}|{arr.shape}|".encode())
    digest.update(arr.tobytes())


def fingerprint(dataset) -> str:
    """SHA-256 (hex) of what ``dataset`` feeds the model, batch by batch, and of its labels:
    two datasets share it only when they give the model the same inputs in the same order."""
    digest = hashlib.sha256()
    for feed in dataset.batches(batch_size=256):
        for name in sorted(feed):
            _update(digest, name, feed[name])
    labels = getattr(dataset, "labels", None)
    if labels is not None:
        _update(digest, "<labels>", labels)
    return digest.hexdigest()
