"""More calibration data from the calibration data: images and their mirror images."""
from __future__ import annotations

from typing import Mapping

import numpy as np

from qaev.data.arrays import ArrayDataset
from qaev.errors import DataError

__all__ = ["is_image_batch", "mirror_images", "mirrored"]


def is_image_batch(feed: Mapping[str, np.ndarray]) -> bool:
    """Whether every input of ``feed`` is a batch of images ``[N, C, H, W]`` (a few channels
    at most, wider than one pixel): data whose mirror images are images of the same kind."""
    return bool(feed) and all(np.ndim(x) == 4 and np.shape(x)[1] <= 4 and np.shape(x)[3] > 1
                              for x in feed.values())


def mirror_images(feed: Mapping[str, np.ndarray], *, where: str = "calibration data") -> dict[str, np.ndarray]:
    """Every input of ``feed`` mirrored left to right.

    Raises:
        DataError: an input is not a batch of images ``[N, C, H, W]`` (named, with ``where``).
    """
    for name, x in feed.items():
        if not is_image_batch({name: x}):
            raise DataError(f"{where}: input {name!r} has shape {tuple(np.shape(x))}; mirror images need every input "
                            "to be a batch of images [N, C, H, W] with at most 4 channels")
    return {name: np.ascontiguousarray(np.asarray(x)[..., ::-1]) for name, x in feed.items()}


def mirrored(data: ArrayDataset) -> ArrayDataset:
    """``data`` followed by its images mirrored left to right (labels repeated).

    Raises:
        DataError: an input is not a batch of images (named), or ``data`` holds whole feeds.
    """
    if data.feeds:
        raise DataError(f"{data.name}: mirror images need samples, not whole feeds")
    flipped = mirror_images(data.inputs, where=data.name)
    labels = None if data.labels is None else np.concatenate([data.labels, data.labels])
    return ArrayDataset({name: np.concatenate([x, flipped[name]]) for name, x in data.inputs.items()},
                        labels=labels, name=f"{data.name} and its mirror images")
