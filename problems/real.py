"""Builders of the real-model problems: EfficientNet-Lite0 on ImageNet images and
all-MiniLM-L6-v2 on STS-B. Data comes from ``data=`` or ``$QAEV_DATA``; nothing is
downloaded."""
from __future__ import annotations

from pathlib import Path

from qaev.data.locate import find_data_root, resolve_data_path
from qaev.errors import DataError

__all__ = ["data_root", "lite0_heldout_parts", "lite0_parts", "minilm_parts"]

_DEFAULT_CALIB = 200


def data_root() -> Path:
    """``$QAEV_DATA``, else the first ``shared/data`` folder found above the working directory."""
    root = find_data_root()
    if root is None:
        raise DataError("no data folder: pass --data DIR or set QAEV_DATA to the folder holding the datasets")
    return root


def _folder(data, default: str) -> Path:
    return resolve_data_path(data, default=default)


def lite0_parts(*, data=None, calib: int | None = None, eval: int | None = None, seed: int = 0, **_):
    """Lite0; ``data`` is an ImageNet-style folder (default ``imagenet-val-1300``), split
    into ``calib`` (default 200) and evaluation images with ``seed``; ``full`` is every image."""
    from qaev.model.graph import load_model
    from qaev.problems.efficientnet_lite import lite0_model_path, load_lite0_images
    from qaev.problems.registry import Parts

    images = load_lite0_images(_folder(data, "imagenet-val-1300"))
    first, second = images.split(n_first=calib or _DEFAULT_CALIB, n_second=eval, seed=seed)
    return Parts(load_model(lite0_model_path()), first, second, "top1", full=images)


def lite0_heldout_parts(*, data=None, test_data=None, calib: int | None = None, eval: int | None = None,
                        seed: int = 0, **_):
    """Lite0 calibrated and searched on one folder and tested on another: ``data`` (default
    ``imagenet-samples``, 1000 train-split images, one per class) is split into ``calib``
    (default 200) and search images with ``seed``; the held-out ``test`` split is every image
    of ``test_data`` (default ``imagenet-val-1300``), which neither calibration nor search sees."""
    from qaev.model.graph import load_model
    from qaev.problems.efficientnet_lite import lite0_model_path, load_lite0_images
    from qaev.problems.registry import Parts

    images = load_lite0_images(_folder(data, "imagenet-samples"))
    first, second = images.split(n_first=calib or _DEFAULT_CALIB, n_second=eval, seed=seed)
    test = load_lite0_images(_folder(test_data, "imagenet-val-1300"))
    return Parts(load_model(lite0_model_path()), first, second, "top1", test=test, full=test)


def minilm_parts(*, data=None, calib: int | None = None, eval: int | None = None, seed: int = 0, **_):
    """MiniLM; calibration and search pairs from STS-B dev (seeded split; ``calib``
    default 200), and the held-out ``test`` split is STS-B test (1379 pairs)."""
    from qaev.model.graph import load_model
    from qaev.problems.minilm import load_minilm_stsb, minilm_model_path
    from qaev.problems.registry import Parts

    folder = _folder(data, "stsb")
    dev = load_minilm_stsb(folder, split="dev")
    first, second = dev.split(n_first=calib or _DEFAULT_CALIB, n_second=eval, seed=seed)
    test = load_minilm_stsb(folder, split="test")
    return Parts(load_model(minilm_model_path()), first, second, "spearman", test=test, full=test)
