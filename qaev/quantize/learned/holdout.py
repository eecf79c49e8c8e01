"""Calibration samples held out from block reconstruction's learning, to choose what it keeps.

Learned on a few hundred calibration samples, a block's rounding fits them far better than
it fits new inputs (on EfficientNet-Lite0, 4-bit weights: the model's softmax 3 millinats from
float's on its 200 calibration images and 53-59 on new ones; docs/results-learned-rounding.md).
With a share held out, the block learns on the rest and its state is read on the held-out
samples at regular steps (the start included); the block keeps the state whose hard-rounded
error on them is lowest: early stopping on samples the learning never saw, instead of the
last step, or the start only when the learning ended worse on the samples it learned from.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from qaev.quantize.learned._torch import require_torch
from qaev.quantize.learned.block_state import BlockQuantizer, Samples

__all__ = ["HoldoutSplit", "holdout_split", "BestState", "CHECKS"]

#: Readings of the held-out error per block's learning (besides its start).
CHECKS = 10


def _take(values: tuple, picks: tuple) -> tuple:
    """Per chunk, the samples ``picks`` names; chunks it names none of are left out."""
    return tuple(v[p] for v, p in zip(values, picks) if len(p))


@dataclass(frozen=True)
class HoldoutSplit:
    """Per chunk of :class:`~qaev.quantize.learned.block_state.Samples`, the indices the
    learning draws from and those held out (either may be empty in a chunk)."""

    learn: tuple
    held: tuple

    def samples(self, samples: Samples, *, held: bool) -> Samples:
        """The learning's or the held-out part of ``samples`` (the same split at every block)."""
        picks = self.held if held else self.learn
        fp = _take(samples.fp, picks)
        q = fp if samples.q is samples.fp else _take(samples.q, picks)
        return Samples(main=samples.main, fp=fp, q=q, side={k: _take(v, picks) for k, v in samples.side.items()})

    def targets(self, targets: tuple, *, held: bool) -> tuple:
        """The float block's outputs on that part."""
        return _take(targets, self.held if held else self.learn)


def holdout_split(samples: Samples, share: float, gen) -> HoldoutSplit:
    """Hold out ``share`` of every chunk's samples, drawn from ``gen`` (at least one where a
    chunk has two or more, and never all: a one-sample chunk is only learned from).

    Raises:
        ValueError: no sample would be held out (fewer than two calibration samples).
    """
    torch = require_torch()
    learn, held = [], []
    for values in samples.fp:
        n = values.shape[0]
        k = min(max(int(round(share * n)), 1), n - 1) if n > 1 else 0
        order = torch.randperm(n, generator=gen)
        held.append(order[:k].sort().values)
        learn.append(order[k:].sort().values)
    if not any(len(p) for p in held):
        raise ValueError("block reconstruction: holding out calibration samples needs at least two of them")
    return HoldoutSplit(learn=tuple(learn), held=tuple(held))


@dataclass
class BestState:
    """The block state with the lowest hard-rounded error on the held-out samples so far.

    Attributes:
        error: that error.
        step: the learning steps taken when it was read (0: the start).
        state: that state (:meth:`BlockQuantizer.state`).
        first: the error at the start (the reading at step 0).
    """

    bq: BlockQuantizer
    samples: Samples
    targets: tuple
    error: float = float("inf")
    step: int = 0
    state: list = field(default_factory=list)
    first: float = float("nan")

    def check(self, step: int) -> None:
        """Read the block's current state on the held-out samples; keep it if it is the best."""
        with require_torch().no_grad():
            error = self.bq.error(self.samples, self.targets)
        if step == 0:
            self.first = error
        if error < self.error:
            self.error, self.step, self.state = error, step, self.bq.state()

    def restore(self) -> None:
        """Put the best state back into the block."""
        self.bq.restore(self.state)
