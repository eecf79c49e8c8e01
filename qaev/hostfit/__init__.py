"""Fitting the ``host`` hardware table to ONNX Runtime timings measured on this machine."""
