"""Where qaev keeps derived data (preprocessed arrays, unpacked assets)."""
from __future__ import annotations

import os
import pathlib

from qaev.errors import ConfigError

__all__ = ["cache_dir"]


def cache_dir(*parts: str) -> pathlib.Path:
    """Returns ``$QAEV_CACHE/<parts>`` (default ``~/.cache/qaev/<parts>``), created.

    Raises:
        ConfigError: it cannot be created (``QAEV_CACHE`` names a file, a read-only place).
    """
    root = os.environ.get("QAEV_CACHE") or pathlib.Path.home() / ".cache" / "qaev"
    path = pathlib.Path(root).expanduser().joinpath(*parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cache folder {path} cannot be created ({exc.strerror or exc}); set QAEV_CACHE to a "
                          "writable folder") from None
    return path
