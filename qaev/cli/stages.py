"""Status lines for one-shot commands (``qaev evaluate``, ``qaev quantize``).

A stage still running after :data:`AFTER_S` seconds says so on stderr
(``qaev: measuring on 1797 samples ...``) and, when it ends, how long it took; a quick
stage prints nothing. stdout (``--json`` included) is left alone.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO

__all__ = ["stage", "AFTER_S"]

#: Seconds a stage runs before its line is printed.
AFTER_S = 3.0


@contextmanager
def stage(text: str, *, err: TextIO | None = None) -> Iterator[None]:
    """Run the ``with`` block as a stage named ``text`` (see the module docstring)."""
    stream = err if err is not None else sys.stderr
    start, lock, shown = time.monotonic(), threading.Lock(), []

    def show() -> None:
        with lock:
            shown.append(True)
            stream.write(f"qaev: {text} ...\n")
            stream.flush()

    timer = threading.Timer(AFTER_S, show)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        elapsed = time.monotonic() - start
        with lock:
            if shown or elapsed >= AFTER_S:
                stream.write(f"qaev: {text}: done in {elapsed:.1f} s\n")
                stream.flush()
