"""The pieces of ``benchmarks/compare.py``: the splits, the methods, the test readings and
the tables."""
