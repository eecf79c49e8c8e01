"""Writing files so a reader never sees half of one, and a failed write says where."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from qaev.errors import WriteError

__all__ = ["write_atomic", "write_error", "append_line", "write_cache", "npz_bytes", "read_npz_cache"]

_UMASK = os.umask(0)  # read once (at import, before any thread): temporary files are created 0600
os.umask(_UMASK)


def write_error(path: str | os.PathLike, exc: OSError) -> WriteError:
    """The one-line error of a failed write to ``path`` (a full disk, no permission, ...)."""
    return WriteError(f"cannot write {path}: {exc.strerror or exc}")


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to a fresh temporary sibling, flush it to disk, then
    rename it over ``path``: ``path`` holds the old file or the whole new one, never part
    of one. A failed write (a full disk) removes the temporary file.

    Raises:
        WriteError: ``path`` is a directory or cannot be written; the message names it.
    """
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"cannot write {path}: it is a directory")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o666 & ~_UMASK)
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` (ending in a newline) to ``path`` and flush it to disk.

    Raises:
        WriteError: the line cannot be written (a full disk); the message names the file.
    """
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise write_error(path, exc) from None


def write_cache(path: str | os.PathLike, data: bytes) -> bool:
    """:func:`write_atomic` for a cache file: a failed write (a full disk) is a warning, as
    the run can go on without the copy; returns whether it was written."""
    try:
        write_atomic(path, data)
        return True
    except WriteError as exc:
        import warnings

        warnings.warn(f"cache not written: {exc}", stacklevel=2)
        return False


def npz_bytes(**arrays) -> bytes:
    """The bytes of an ``.npz`` file holding ``arrays`` (no pickle)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def read_npz_cache(path: str | os.PathLike) -> dict | None:
    """The arrays of a cache file written with :func:`write_cache` and :func:`npz_bytes`, or
    None when it is missing or cannot be read (the caller computes it again, never trusting
    a damaged copy)."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception:
        return None
