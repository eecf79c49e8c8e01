"""Progress of learned rounding on the command line: its per-layer and per-block lines
(loss before and after, seconds) from the ``qaev.learned`` logger, on stderr."""
from __future__ import annotations

import logging

import click

from qaev.config import QuantConfig

__all__ = ["show_learning"]

_LEARNED = frozenset({"adaround", "block"})


class _Stderr(logging.Handler):
    """Each line to the stderr of the moment (not the stream there was when it was made)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"  {record.getMessage()}", err=True)


def show_learning(config: QuantConfig) -> None:
    """Print the learning lines while ``config`` is built, if any layer learns its rounding."""
    if not any(cfg.effective().rounding.value in _LEARNED for cfg in config.layers.values() if not cfg.is_float):
        return
    logger = logging.getLogger("qaev.learned")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)
