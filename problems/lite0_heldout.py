"""``efficientnet-lite0-heldout``: Lite0 calibrated and searched on ``imagenet-samples``
(1000 train-split images, one per class: 200 calibration / 800 search, seeded) and tested
on all 1300 images of ``imagenet-val-1300``, which neither calibration nor search sees."""
from __future__ import annotations

from qaev.data.parts import Parts, ProblemSpec
from qaev.problems.lite0 import model_path

__all__ = ["SPEC"]


def _parts(*, data=None, test_data=None, calib: int | None = None, eval: int | None = None, seed: int = 0,
           **_) -> Parts:
    from qaev.model.graph import load_model
    from qaev.problems._data import DEFAULT_CALIB, folder
    from qaev.problems.efficientnet_lite import load_lite0_images

    images = load_lite0_images(folder(data, "imagenet-samples"))
    first, second = images.split(n_first=calib or DEFAULT_CALIB, n_second=eval, seed=seed)
    test = load_lite0_images(folder(test_data, "imagenet-val-1300"))
    return Parts(load_model(model_path()), first, second, "top1", test=test, full=test)


SPEC = ProblemSpec("efficientnet-lite0-heldout", "EfficientNet-Lite0: calib + search on imagenet-samples (1000 "
                   "train-split images: 200 calib / 800 search), held-out test on imagenet-val-1300 (1300 val "
                   "images), top-1", _parts, model_path)
