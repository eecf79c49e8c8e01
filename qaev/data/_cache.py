"""Where qaev keeps derived data (preprocessed arrays, unpacked assets)."""
from __future__ import annotations

import os
import pathlib

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> pathlib.Path:
    """Returns ``$QAEV_CACHE/<parts>`` (default ``~/.cache/qaev/<parts>``), created."""
    root = os.environ.get("QAEV_CACHE") or pathlib.Path.home() / ".cache" / "qaev"
    path = pathlib.Path(root).expanduser().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
