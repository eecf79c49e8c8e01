"""Weight rounding methods behind one registry (:mod:`.registry`): round-to-nearest,
GPTQ and a codebook, one module each (see :mod:`.base` for what a method implements)."""
from qaev.quantize.rounding.registry import ROUNDINGS, RoundingEntry, get_rounding, rounding_entry

__all__ = ["ROUNDINGS", "RoundingEntry", "get_rounding", "rounding_entry"]
