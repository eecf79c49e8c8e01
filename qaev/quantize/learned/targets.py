"""What each block is fitted to (:attr:`~qaev.quantize.learned.reconstruct.ReconstructOptions.target`).

``float``: the float model's output of the block (BRECQ's and QDrop's target, AdaRound's
"asymmetric" reconstruction). The quantized block is fed the outputs of the blocks before
it as already quantized, so it learns both to copy its float function and to undo the
drift those blocks left, on the calibration samples.

``own``: the float block run on the very input the quantized block is fed (AdaRound's
"symmetric" reconstruction). The block learns to copy its own float function and corrects
nothing upstream: what it learns owes nothing to how the blocks before it ended on the
calibration samples. Under QDrop's input mixing the input changes every step, so the
target is computed every step from the mixed input.
"""
from __future__ import annotations

from qaev.quantize.learned._torch import require_torch
from qaev.quantize.learned.block_state import BlockQuantizer, Samples

__all__ = ["TARGETS", "fit_targets", "step_target"]

#: The choices of :attr:`~qaev.quantize.learned.reconstruct.ReconstructOptions.target`.
TARGETS = ("float", "own")


def fit_targets(bq: BlockQuantizer, samples: Samples, chain: tuple, target: str) -> tuple:
    """The block outputs ``bq`` is read against on every sample (chunks): ``chain`` (the
    float model's, :meth:`BlockQuantizer.float_outputs`) for ``float``, the float block on
    the quantized inputs for ``own``."""
    if target == "float" or samples.one_version:
        return chain
    with require_torch().no_grad():
        return bq.float_outputs(samples, quantized=True)[0]


def step_target(bq: BlockQuantizer, feeds: dict, targets: tuple, at: tuple, target: str):
    """One learning step's target: the step's rows of ``targets``, or for ``own`` the float
    block on the step's (mixed) input ``feeds``."""
    if target == "float":
        return targets[at[0]][at[1]]
    with require_torch().no_grad():
        return bq.graph.run(feeds)[bq.block.output]
