"""Layer-wise learned rounding (AdaRound) on the round-to-nearest grid.

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020:
whether each weight rounds up or down is learned to minimise the layer's output error on
the calibration inputs (:mod:`qaev.quantize.learned.adaround`, PyTorch). Per output row the
result never reconstructs the calibration outputs worse than GPTQ or round-to-nearest.
Needs ``pip install 'qaev[torch]'``; without it building a config that names it stops with
one line naming that extra. Results are kept on disk under ``$QAEV_CACHE/adaround``, keyed
by the weight, its grid, the calibration inputs' second moment and the learning settings, so
a config rebuilt from the same calibration data (an export, another search worker) does not
learn again.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from qaev.data._cache import cache_dir
from qaev.files import npz_bytes, read_npz_cache, write_cache
from qaev.quantize.rounding.base import DataAwareRounding

__all__ = ["AdaRound", "METHOD"]

_FORMAT = 1  # bump when the learning changes: the kept results are then learned again


class AdaRound(DataAwareRounding):
    """:func:`~qaev.quantize.learned.adaround.adaround` with the layer-input Hessian of the
    calibration data (default :class:`~qaev.quantize.learned.adaround.AdaRoundOptions`)."""

    name = "adaround"

    def round(self, w, layer, eff, *, grid, stats):
        from qaev.quantize.learned.adaround import AdaRoundOptions, adaround

        hessian = stats().hessian
        digest = hashlib.sha256(repr((_FORMAT, layer.op_type, tuple(layer.weight_shape), eff.symmetric, grid.axis,
                                      grid.block_size, grid.bits, AdaRoundOptions())).encode())
        for array in (w, grid.q, grid.scale, grid.zero_point, hessian):
            digest.update(np.ascontiguousarray(array).tobytes())
        path = cache_dir("adaround") / f"{digest.hexdigest()[:32]}.npz"
        q = (read_npz_cache(path) or {}).get("q")
        if q is not None and q.shape == grid.q.shape and q.dtype == grid.q.dtype:
            return replace(grid, q=q)
        learned = adaround(w, grid, hessian, layer=layer, symmetric=eff.symmetric)[0]
        write_cache(path, npz_bytes(q=learned.q))  # whole files only
        return learned


METHOD = AdaRound()
