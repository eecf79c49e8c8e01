"""Where the datasets live: ``$QAEV_DATA``, else a ``shared/data`` folder above a start
folder; and how a ``--data`` argument resolves against that root."""
from __future__ import annotations

import os
from pathlib import Path

from qaev.errors import DataError

__all__ = ["find_data_root", "resolve_data_path"]


def find_data_root(start: Path | None = None) -> Path | None:
    """``$QAEV_DATA``, else the first ``shared/data`` folder in ``start`` (default: the
    working directory) or above it; None when there is neither."""
    if os.environ.get("QAEV_DATA"):
        return Path(os.environ["QAEV_DATA"])
    start = Path.cwd() if start is None else Path(start).resolve()
    for parent in [start, *start.parents]:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def resolve_data_path(data, *, default: str | None = None) -> Path:
    """The folder or file ``data`` names: as given, else relative to the data root; with
    ``data`` None, ``default`` under the data root.

    Raises:
        DataError: no data root when one is needed, or the path does not exist.
    """
    root = find_data_root()
    if data is None:
        if root is None:
            raise DataError("no data folder: pass --data DIR or set QAEV_DATA to the folder holding the datasets")
        path = root / default
    else:
        path = Path(data)
        if not path.exists() and not path.is_absolute() and root is not None:
            path = root / path
    if not path.exists():
        raise DataError(f"--data: {path} does not exist")
    return path
