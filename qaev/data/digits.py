"""The bundled digits case: a small CNN trained on scikit-learn's 8x8 digits.

The assets are written by ``problems/train_digits.py`` and shipped as package data of
``qaev.problems``: ``digits.onnx`` (input ``input`` [N,1,8,8] float32, output ``logits``
[N,10]) and ``digits.npz`` (disjoint calib and test splits; the training split is not
shipped). ``digits.json`` records how they were made.
"""
from __future__ import annotations

import importlib
import os
import pathlib
import shutil
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from qaev.data._cache import cache_dir
from qaev.data.arrays import ArrayDataset
from qaev.errors import ConfigError, DataError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["DIGITS_SPLITS", "load_digits_split", "digits_model_path"]

#: The splits shipped in ``digits.npz``.
DIGITS_SPLITS = ("calib", "test")


def _assets_root() -> Traversable:
    """Returns the ``assets`` folder of the ``qaev.problems`` package."""
    try:
        return resources.files("qaev.problems") / "assets"
    except NotADirectoryError:
        # Python <= 3.11 cannot read resources of a namespace package installed in
        # editable mode (its __path__ holds a non-directory hook entry).
        module = importlib.import_module("qaev.problems")
        return next(pathlib.Path(p) for p in module.__path__ if pathlib.Path(p).is_dir()) / "assets"
    except ModuleNotFoundError as exc:
        # A source checkout run without installing: problems/ sits beside qaev/.
        checkout = pathlib.Path(__file__).resolve().parents[2] / "problems" / "assets"
        if checkout.is_dir():
            return checkout
        raise DataError(f"bundled assets not found: cannot import qaev.problems ({exc})") from exc


def _asset(name: str) -> Traversable:
    """Returns the bundled asset ``qaev.problems/assets/<name>``."""
    asset = _assets_root() / name
    if not asset.is_file():
        raise DataError(f"bundled asset missing: qaev.problems/assets/{name}; "
                        "regenerate it with problems/train_digits.py")
    return asset


def load_digits_split(split: str) -> ArrayDataset:
    """Loads one split of the bundled digits data.

    Args:
        split: ``"calib"`` (300 samples) or ``"test"`` (497 samples).

    Returns:
        Dataset with input ``input`` (float32 [N,1,8,8], pixel values / 16) and int64
        labels [N], named ``digits-<split>``.

    Raises:
        ConfigError: Unknown split.
        DataError: The bundled file is missing or lacks the split.
    """
    if split not in DIGITS_SPLITS:
        raise ConfigError(f"unknown digits split {split!r}; expected one of {DIGITS_SPLITS}")
    asset = _asset("digits.npz")
    with asset.open("rb") as fh, np.load(fh, allow_pickle=False) as npz:
        try:
            x, y = npz[f"{split}_x"], npz[f"{split}_y"]
        except KeyError as exc:
            raise DataError(f"qaev.problems/assets/digits.npz lacks {exc}") from exc
    return ArrayDataset({"input": x.astype(np.float32, copy=False)},
                        labels=y.astype(np.int64, copy=False), name=f"digits-{split}")


def digits_model_path() -> pathlib.Path:
    """Returns a filesystem path to the bundled ``digits.onnx``.

    Installed as files (regular or editable install) the package's own file is
    returned; from a zip archive the model is copied once into the qaev cache folder
    (``$QAEV_CACHE``, default ``~/.cache/qaev``).

    Raises:
        DataError: The bundled model is missing.
    """
    asset = _asset("digits.onnx")
    if isinstance(asset, pathlib.Path):
        return asset
    with resources.as_file(asset) as tmp:
        target = cache_dir("assets") / "digits.onnx"
        tmp_path = pathlib.Path(tmp)
        if not target.is_file() or target.read_bytes() != tmp_path.read_bytes():
            partial = target.with_suffix(f".{os.getpid()}.partial")
            shutil.copyfile(tmp_path, partial)
            os.replace(partial, target)
    return target
