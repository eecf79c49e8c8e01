"""Helpers of ``benchmarks/learned_rounding.py``: the summary of its results and its speed checks."""
