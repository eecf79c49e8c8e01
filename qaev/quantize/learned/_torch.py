"""The optional PyTorch dependency of the learned-rounding modules, in one place."""
from __future__ import annotations

from qaev.errors import ConfigError

__all__ = ["require_torch", "seeded_generator"]

_HINT = "learned rounding needs PyTorch: pip install 'qaev[torch]'"


def require_torch():
    """The ``torch`` module.

    Raises:
        ConfigError: PyTorch is not installed (one line naming the extra to install).
    """
    try:
        import torch
    except ImportError:
        raise ConfigError(_HINT) from None
    return torch


def seeded_generator(seed: int):
    """A CPU ``torch.Generator`` seeded with ``seed`` (every random choice here draws from one)."""
    torch = require_torch()
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen
