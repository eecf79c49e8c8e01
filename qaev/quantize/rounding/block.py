"""Block reconstruction (BRECQ/QDrop) as a rounding method of the whole model.

The layers whose rounding is ``block`` are learned together, one block of the graph at a
time (Li et al., "BRECQ", ICLR 2021; Wei et al., "QDrop", ICLR 2022): their rounding, the
step sizes of the activations quantized inside each block and a shift of their output
channels, against the float block's output, each block fed by the blocks before it already
quantized (:mod:`qaev.quantize.learned.reconstruct`, PyTorch). Because the weights of one
layer depend on the others, the method works at model scope: :meth:`qaev.quantize.Quantizer.build`
runs it for the whole config (its registry entry says ``model_scope``) and hands the
result to the QDQ graph, as it does for weights fitted to quantized inputs. Every random
choice draws from one generator with a fixed seed, so the same config and calibration
data rebuild the same model. Needs ``pip install 'qaev[torch]'``.
"""
from __future__ import annotations

from qaev.errors import ConfigError
from qaev.quantize.rounding.base import DataAwareRounding

__all__ = ["BlockReconstruction", "METHOD"]


class BlockReconstruction(DataAwareRounding):
    """Marks layers for block reconstruction; the learning itself is model-scope."""

    name = "block"

    def round(self, w, layer, eff, *, grid, stats):
        if eff.w_bits > 8:  # 16-bit weights are not learned: round-to-nearest, as the whole-model build keeps them
            return grid
        raise ConfigError(f"rounding: block learns layer {layer.name!r} together with its block; "
                          "build the whole model (Quantizer.build), not one layer")


METHOD = BlockReconstruction()
