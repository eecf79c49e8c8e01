"""Per-layer sensitivity proxies at each allowed width: the relative weight error (free, no
data) and the output noise of quantizing one layer (a few unlabelled samples per probe)."""
from __future__ import annotations

import numpy as np

from qaev.config import Granularity, ScaleRule

__all__ = ["weight_error_table", "output_noise_table", "noise_probe_count"]


def weight_error_table(problem) -> np.ndarray:
    """``[searchable layer, w_bits index]`` -> ``||W - Q(W)|| / ||W||`` with round-to-nearest
    at the space's first granularity. Float weights and weightless layers score 0."""
    from qaev.quantize.weights import quantize_weight

    space, model = problem.space, problem.quantizer.model
    table = np.zeros((len(space.searchable), len(space.w_bits)))
    for i, layer in enumerate(space.searchable):
        if not layer.has_weight:
            continue
        granularity = space.granularities[0]
        if granularity.block_size and not layer.supports_blocks:
            granularity = Granularity.PER_CHANNEL
        w = model.weight(layer.weight)
        norm = float(np.linalg.norm(w)) or 1.0
        for j, bits in enumerate(space.w_bits):
            if bits is not None:
                q = quantize_weight(w, bits=bits, granularity=granularity, symmetric=True, scale_rule=ScaleRule.FLOAT,
                                    channel_axis=layer.channel_axis, reduce_axis=layer.reduce_axis)
                table[i, j] = float(np.linalg.norm(w - q.dequantize())) / norm
    return table


def noise_probe_count(problem) -> int:
    """Models :func:`output_noise_table` builds and runs: one per searchable layer and
    width below the highest, plus the all-highest base."""
    return len(problem.space.searchable) * (len(problem.space.w_bits) - 1) + 1


def output_noise_table(problem, *, samples: int = 32, act: str | None = None, progress=None) -> np.ndarray:
    """``[searchable layer, w_bits index]`` -> output noise power ``10^(-SQNR/10)`` (relative
    to the float model's first output) with that layer alone at that width and every other
    layer at the space's highest width, measured on the first ``samples`` evaluation
    samples; no labels are read, so no metric is measured.

    Unlike :func:`weight_error_table` it sees the rounding the space uses (GPTQ, MSE
    ranges) and how much a layer's error reaches the output. The highest-width column
    holds the all-highest base's noise. A probe that fails scores 1 (noise as large as the
    output).

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem`.
        samples: evaluation samples per probe (inferences: ``samples`` x
            :func:`noise_probe_count`).
        act: activation setting of every layer in a probe (default ``float`` where the
            space allows it, i.e. the weights' noise alone).
        progress: called with (done, total) after each probe.
    """
    from qaev.search.width_rows import uniform_row, weight_only_act, with_widths
    from qaev.sensitivity.probes import output_sqnr

    space = problem.space
    n_layers, n_widths = len(space.searchable), len(space.w_bits)
    base_row = uniform_row(space, w_index=n_widths - 1, act=act or weight_only_act(space))
    total, done = noise_probe_count(problem), 0

    def noise(widths) -> float:
        nonlocal done
        sqnr = output_sqnr(problem, space.decode(with_widths(base_row, widths, space.genome)), samples)
        done += 1
        if progress is not None:
            progress(done, total)
        return 1.0 if np.isnan(sqnr) else float(min(1.0, 10.0 ** (-sqnr / 10.0)))

    top = np.full(n_layers, n_widths - 1)
    table = np.full((n_layers, n_widths), noise(top))
    for i in range(n_layers):
        for j in range(n_widths - 1):
            widths = top.copy()
            widths[i] = j
            table[i, j] = noise(widths)
    return table
