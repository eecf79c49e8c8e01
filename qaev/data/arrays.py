"""In-memory datasets: named input arrays whose first axis is the sample axis."""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterator, Mapping

import numpy as np

from qaev.data.indexing import Indexed, readonly
from qaev.errors import DataError

__all__ = ["ArrayDataset"]


@dataclass(frozen=True)
class ArrayDataset(Indexed):
    """Model inputs (and optional labels) held as numpy arrays.

    Every array's first axis indexes samples, and all arrays have the same number of
    samples. The arrays are stored as read-only views, so a dataset never changes after
    construction (the caller's arrays are left writable).

    Args:
        inputs: Model input name -> array ``[N, ...]``.
        labels: Array ``[N, ...]`` of targets, or None (label-free data).
        name: Human-readable name, used in reports and error messages.
        feeds: each item is one whole model input (``inputs[name][i]`` has the input's full
            shape): for models whose inputs share no batch axis (a ``[2, 1, 128]`` state, a
            scalar, a fixed batch). Batches are then single items, whatever size is asked.

    Raises:
        DataError: No inputs, zero samples, or arrays whose lengths differ.

    Example:
        >>> ds = ArrayDataset({"x": np.zeros((5, 2), np.float32)}, labels=np.arange(5))
        >>> [b["x"].shape[0] for b in ds.batches(batch_size=2)]
        [2, 2, 1]
    """

    inputs: Mapping[str, np.ndarray]
    labels: np.ndarray | None = None
    name: str = "dataset"
    feeds: bool = False

    def __post_init__(self) -> None:
        if not self.inputs:
            raise DataError(f"{self.name}: dataset has no inputs")
        arrays: dict[str, np.ndarray] = {}
        for key, value in self.inputs.items():
            array = np.asarray(value)
            if array.ndim == 0:
                raise DataError(f"{self.name}: input {key!r} is a scalar, expected [N, ...]")
            arrays[str(key)] = readonly(array)
        lengths = {key: len(array) for key, array in arrays.items()}
        labels = None
        if self.labels is not None:
            labels = np.asarray(self.labels)
            if labels.ndim == 0:
                raise DataError(f"{self.name}: labels are a scalar, expected [N, ...]")
            lengths["<labels>"] = len(labels)
            labels = readonly(labels)
        if len(set(lengths.values())) != 1:
            raise DataError(f"{self.name}: arrays differ in length along axis 0: {lengths}")
        if next(iter(lengths.values())) == 0:
            raise DataError(f"{self.name}: dataset is empty")
        object.__setattr__(self, "inputs", MappingProxyType(arrays))
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    @property
    def input_names(self) -> tuple[str, ...]:
        """The input names, in insertion order."""
        return tuple(self.inputs)

    def batches(self, *, batch_size: int = 64) -> Iterator[dict[str, np.ndarray]]:
        """Yields feed dicts of consecutive samples, in order; the last may be smaller.

        Args:
            batch_size: Samples per batch, at least 1.

        Yields:
            Input name -> read-only array slice ``[<=batch_size, ...]``.
        """
        if batch_size < 1:
            raise DataError(f"{self.name}: batch_size must be >= 1, got {batch_size}")
        if self.feeds:
            for i in range(len(self)):
                yield {key: array[i, ...] for key, array in self.inputs.items()}  # 0-d arrays stay arrays
            return
        for start in range(0, len(self), batch_size):
            yield {key: array[start:start + batch_size] for key, array in self.inputs.items()}

    def subset(self, indices) -> ArrayDataset:
        """Returns the samples at ``indices`` (integer positions, in the order given).

        Raises:
            DataError: Non-integer, out-of-range or no indices.
        """
        idx = self._positions(indices)
        return ArrayDataset(
            {key: array[idx] for key, array in self.inputs.items()},
            labels=None if self.labels is None else self.labels[idx],
            name=self.name,
            feeds=self.feeds,
        )
