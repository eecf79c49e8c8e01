"""Progress of learned rounding on the command line: its per-layer and per-block lines
(loss before and after, seconds) from the ``qaev.learned`` logger, on stderr."""
from __future__ import annotations

import logging
import sys

from qaev.config import QuantConfig

__all__ = ["show_learning"]

_LEARNED = frozenset({"adaround", "block"})


def show_learning(config: QuantConfig) -> None:
    """Print the learning lines while ``config`` is built, if any layer learns its rounding."""
    if not any(cfg.effective().rounding.value in _LEARNED for cfg in config.layers.values() if not cfg.is_float):
        return
    logger = logging.getLogger("qaev.learned")
    if not any(getattr(h, "_qaev", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("  %(message)s"))
        handler._qaev = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
