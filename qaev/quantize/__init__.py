"""Turning configs into quantized ONNX models: grids, the QDQ evaluation graph, export."""
from qaev.quantize.codebook import CodebookWeight, codebook_quantize
from qaev.quantize.export import export_model
from qaev.quantize.plan import activation_plan, validate_config
from qaev.quantize.qdq import build_qdq
from qaev.quantize.quantizer import Quantizer, activation_tensors, cache_dir, uniform_config
from qaev.quantize.simulate import Simulator
from qaev.quantize.weights import QuantizedWeight, WeightCache, activation_params, quantize_weight

__all__ = [
    "Quantizer",
    "Simulator",
    "build_qdq",
    "export_model",
    "validate_config",
    "activation_plan",
    "activation_tensors",
    "cache_dir",
    "uniform_config",
    "quantize_weight",
    "activation_params",
    "QuantizedWeight",
    "WeightCache",
    "codebook_quantize",
    "CodebookWeight",
]
