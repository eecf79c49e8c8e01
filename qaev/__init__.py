"""qaev: per-layer mixed-precision quantization of ONNX models, measured with ONNX Runtime.

The flow: :func:`load_model` -> :func:`find_layers` -> a :class:`QuantConfig` per
candidate -> :class:`Quantizer` (calibration statistics, QDQ graph) -> :class:`Evaluator`
(measured metric) -> :func:`export_model` (the file you ship). :func:`summary` turns a
search's front into a table.
"""
from qaev.quantize.calibration.stats import ActivationStats
from qaev.config import ActMode, CalibMethod, Granularity, LayerConfig, QuantConfig, ScaleRule
from qaev.config_io import load_config, save_config
from qaev.errors import ConfigError, DataError, ModelError, QaevError
from qaev.evaluation.evaluator import Evaluator, Measurement
from qaev.model.graph import FloatModel, load_model
from qaev.model.layers import LayerInfo, find_layers
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.runtime.summary import Summary, summary
from qaev.version import __version__ as __version__


__all__ = [
    "ActMode",
    "ActivationStats",
    "CalibMethod",
    "ConfigError",
    "DataError",
    "Evaluator",
    "FloatModel",
    "Granularity",
    "LayerConfig",
    "LayerInfo",
    "Measurement",
    "ModelError",
    "QaevError",
    "QuantConfig",
    "Quantizer",
    "ScaleRule",
    "Summary",
    "export_model",
    "find_layers",
    "load_config",
    "load_model",
    "save_config",
    "summary",
    "uniform_config",
]
