"""SIGTERM as Ctrl-C: both stop a command the same way (a search writes the front of what
it finished), and the exit code says which came: 130 for SIGINT, 143 for SIGTERM."""
from __future__ import annotations

import signal
import threading

__all__ = ["install", "restore", "exit_code", "reset"]

_received: int | None = None


def _on_signal(signum, frame) -> None:
    global _received
    _received = signum
    raise KeyboardInterrupt


def install() -> dict:
    """Turn SIGTERM into a KeyboardInterrupt and remember SIGINT too (main thread only);
    returns the handlers replaced, for :func:`restore`."""
    reset()
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_signal)}
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the shell ignores it
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, _on_signal)
    return previous


def restore(previous: dict) -> None:
    """Put back the handlers :func:`install` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def reset() -> None:
    """Forget a signal received before (a new command starts)."""
    global _received
    _received = None


def exit_code() -> int:
    """128 + the signal that interrupted the command (130 when it was Ctrl-C or unknown)."""
    return 128 + (_received or signal.SIGINT)
