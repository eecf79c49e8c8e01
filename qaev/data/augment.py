"""More calibration data from the calibration data: images and their mirror images."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from qaev.data.arrays import ArrayDataset
from qaev.errors import DataError

__all__ = ["is_image_batch", "mirrored"]


def is_image_batch(feed: Mapping[str, np.ndarray]) -> bool:
    """Whether every input of ``feed`` is a batch of images ``[N, C, H, W]`` (a few channels
    at most, wider than one pixel): data whose mirror images are images of the same kind."""
    return bool(feed) and all(np.ndim(x) == 4 and np.shape(x)[1] <= 4 and np.shape(x)[3] > 1
                              for x in feed.values())


def mirrored(data: ArrayDataset) -> ArrayDataset:
    """``data`` followed by its images mirrored left to right (labels repeated).

    Raises:
        DataError: an input is not a batch of images ``[N, C, H, W]`` (named), or ``data``
            holds whole feeds rather than samples.
    """
    for name, x in data.inputs.items():
        if data.feeds or not is_image_batch({name: x}):
            raise DataError(f"{data.name}: input {name!r} has shape {tuple(x.shape)}; mirror images need every "
                            "input to be a batch of images [N, C, H, W] with at most 4 channels")
    labels = None if data.labels is None else np.concatenate([data.labels, data.labels])
    return ArrayDataset({name: np.concatenate([x, x[..., ::-1]]) for name, x in data.inputs.items()},
                        labels=labels, name=f"{data.name} and its mirror images")
