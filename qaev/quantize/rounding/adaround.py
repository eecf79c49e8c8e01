"""Layer-wise learned rounding (AdaRound) on the round-to-nearest grid.

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020:
whether each weight rounds up or down is learned to minimise the layer's output error on
the calibration inputs (:mod:`qaev.quantize.learned.adaround`, PyTorch). Per output row the
result never reconstructs the calibration outputs worse than GPTQ or round-to-nearest.
Needs ``pip install 'qaev[torch]'``; without it building a config that names it stops with
one line naming that extra.
"""
from __future__ import annotations

from qaev.quantize.rounding.base import GridRounding
from qaev.quantize.rounding.groups import supports_data_aware

__all__ = ["AdaRound", "METHOD"]


class AdaRound(GridRounding):
    """:func:`~qaev.quantize.learned.adaround.adaround` with the layer-input Hessian of the
    calibration data (default :class:`~qaev.quantize.learned.adaround.AdaRoundOptions`)."""

    name = "adaround"

    def problem(self, layer):
        if supports_data_aware(layer):
            return None
        return f"is a {layer.op_type}: adaround rounding applies to Conv/Gemm/MatMul (2-D) weights only"

    def round(self, w, layer, eff, *, grid, stats):
        from qaev.quantize.learned.adaround import adaround

        return adaround(w, grid, stats().hessian, layer=layer, symmetric=eff.symmetric)[0]


METHOD = AdaRound()
