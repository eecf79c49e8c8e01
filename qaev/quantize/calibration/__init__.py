"""Activation calibration: statistics collected once (:mod:`.stats`) and the range of each
registered method (:mod:`.registry`: min/max, percentile, entropy, MSE; one module each)."""
from qaev.quantize.calibration.registry import CALIBRATIONS, CalibrationEntry, calibration_entry, get_calibration

__all__ = ["CALIBRATIONS", "CalibrationEntry", "calibration_entry", "get_calibration"]
