"""Learned rounding on EfficientNet-Lite0 (slow: the real model and its calibration data)."""
import numpy as np
import pytest

from qaev.config import Granularity, ScaleRule
from qaev.quantize import Quantizer
from qaev.quantize.learned.adaround import AdaRoundOptions, adaround
from qaev.quantize.weights import quantize_weight

pytestmark = pytest.mark.slow


def test_adaround_never_reconstructs_a_lite0_layer_worse_than_gptq_on_the_calibration_data():
    from qaev.problems import problem_parts

    parts = problem_parts("efficientnet-lite0", seed=0)
    q = Quantizer.calibrated(parts.model, parts.calib)
    weighted = [layer for layer in q.layers if layer.has_weight]
    for layer in (weighted[0], weighted[1], weighted[len(weighted) // 2], weighted[-1]):  # stem, depthwise, 1x1, fc
        w = q.model.weight(layer.weight)
        nearest = quantize_weight(w, bits=4, granularity=Granularity.PER_CHANNEL, symmetric=True,
                                  scale_rule=ScaleRule.FLOAT, channel_axis=layer.channel_axis,
                                  reduce_axis=layer.reduce_axis)
        _, report = adaround(w, nearest, q.inputs.get(layer).hessian, layer=layer, symmetric=True,
                             options=AdaRoundOptions(iters=300))
        assert np.isfinite(report.final) and report.final <= report.gptq * (1 + 1e-9), layer.name
        assert report.final <= report.nearest * (1 + 1e-9), layer.name
