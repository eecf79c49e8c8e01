"""Turning configs into quantized ONNX models: grids, the QDQ evaluation graph, export.

The names below are loaded on first use, so importing one submodule (e.g. the rounding
registry, which the config schema reads) does not import the whole engine.
"""
from importlib import import_module

_EXPORTS = {
    "Quantizer": "qaev.quantize.quantizer",
    "activation_tensors": "qaev.quantize.quantizer",
    "cache_dir": "qaev.quantize.quantizer",
    "uniform_config": "qaev.quantize.quantizer",
    "Simulator": "qaev.quantize.simulate",
    "build_qdq": "qaev.quantize.qdq",
    "export_model": "qaev.quantize.export",
    "validate_config": "qaev.quantize.plan",
    "activation_plan": "qaev.quantize.plan",
    "quantize_weight": "qaev.quantize.weights",
    "activation_params": "qaev.quantize.weights",
    "QuantizedWeight": "qaev.quantize.weights",
    "WeightCache": "qaev.quantize.weights",
    "codebook_quantize": "qaev.quantize.codebook",
    "CodebookWeight": "qaev.quantize.codebook",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'qaev.quantize' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
