"""One process per run directory: an advisory lock on ``DIR/.lock``, held while a search
writes there and released by the system when the process ends, however it ends."""
from __future__ import annotations

import os
from pathlib import Path

from qaev.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

__all__ = ["RunLock", "LOCK_NAME"]

LOCK_NAME = ".lock"


class RunLock:
    """The lock of run directory ``out`` (which must exist).

    Raises:
        ConfigError: another process holds it (the message names that process).
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            self._fd = None
            raise ConfigError(f"--out: {out} is in use by another qaev process (pid {holder}); wait for it to "
                              "finish or choose another directory") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
