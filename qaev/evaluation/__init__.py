"""Measuring candidates: the evaluator and its metrics, the staged race and the screen
(:mod:`.staging`, :mod:`.screening`)."""
