"""Where the real-model problems find their data: ``data=`` or ``$QAEV_DATA``; nothing is
downloaded."""
from __future__ import annotations

from pathlib import Path

from qaev.data.locate import find_data_root, resolve_data_path
from qaev.errors import DataError

__all__ = ["data_root", "folder", "DEFAULT_CALIB"]

#: Calibration samples of the real-model problems unless ``calib`` says otherwise.
DEFAULT_CALIB = 200


def data_root() -> Path:
    """``$QAEV_DATA``, else the first ``shared/data`` folder found above the working directory."""
    root = find_data_root()
    if root is None:
        raise DataError("no data folder: pass --data DIR or set QAEV_DATA to the folder holding the datasets")
    return root


def folder(data, default: str) -> Path:
    """``data`` (a folder, or a name under the data root), else ``default`` under it."""
    return resolve_data_path(data, default=default)
