"""Where qaev keeps derived data (preprocessed arrays, unpacked assets)."""
from __future__ import annotations

import os
import pathlib

from qaev.errors import ConfigError

__all__ = ["cache_dir", "cache_root", "CACHE_PARTS"]

#: The folders qaev keeps under the cache root, and what each holds.
CACHE_PARTS = {
    "calib": "calibration statistics, per model and calibration data",
    "sensitivity": "per-layer probe results of `qaev sensitivity` and `--sensitivity noise`",
    "codebook": "learned codebook tables",
    "imagenet": "preprocessed image arrays, per folder and preprocessing",
    "models": "ONNX files the ready-made problems export from their weights",
    "assets": "bundled files unpacked from a zip install",
}


def cache_root() -> pathlib.Path:
    """``$QAEV_CACHE``, else ``~/.cache/qaev`` (not created)."""
    return pathlib.Path(os.environ.get("QAEV_CACHE") or pathlib.Path.home() / ".cache" / "qaev").expanduser()


def cache_dir(*parts: str) -> pathlib.Path:
    """Returns ``$QAEV_CACHE/<parts>`` (default ``~/.cache/qaev/<parts>``), created.

    Raises:
        ConfigError: it cannot be created (``QAEV_CACHE`` names a file, a read-only place).
    """
    path = cache_root().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache folder {path} cannot be created ({exc.strerror or exc}); set QAEV_CACHE to a "
                          "writable folder") from None
    return path
