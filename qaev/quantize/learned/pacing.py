"""Learning within a deadline: how many steps each block of a block reconstruction gets
when the learning must end by a given time (a rebuild inside ``qaev search --time``).

The steps per block are planned from an estimate before the learning starts; where the
learning runs behind it, the blocks still to learn get fewer steps, as many as the time left
affords at the pace measured on the blocks learned so far (their mean seconds per step, and
their mean seconds outside the steps: the block's float and quantized passes). A block never
gets more steps than planned, and none once the deadline has passed. The steps each block
got are recorded (:attr:`~qaev.config.BlockSettings.steps`), so the config rebuilds the
same weights without a deadline.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Pace", "steps_within"]


def steps_within(left_s: float, *, blocks: int, step_s: float, other_s: float, planned: int) -> int:
    """The steps each of ``blocks`` blocks can learn in ``left_s`` seconds at ``step_s``
    seconds a step and ``other_s`` seconds a block besides its steps (at most ``planned``;
    0 when no time is left)."""
    if left_s <= 0 or blocks <= 0:
        return 0
    if step_s <= 0:
        return planned
    return max(0, min(planned, int((left_s - blocks * other_s) / (blocks * step_s))))


@dataclass
class Pace:
    """The pace of a block reconstruction so far, against ``deadline`` (a ``time.monotonic()``;
    None: no deadline, every block gets its planned steps)."""

    deadline: float | None
    blocks: int
    done: int = 0
    steps: int = 0
    step_s: float = 0.0
    other_s: float = 0.0

    def steps_for(self, planned: int) -> int:
        """The steps the next block gets (``planned``, or fewer where the time left is short)."""
        if self.deadline is None:
            return planned
        left = self.deadline - time.monotonic()
        if left <= 0:
            return 0
        if not self.done or not self.steps:  # no pace measured yet: the plan stands
            return planned
        return steps_within(left, blocks=self.blocks - self.done, step_s=self.step_s / self.steps,
                            other_s=self.other_s / self.done, planned=planned)

    def record(self, *, steps: int, learning_s: float, block_s: float) -> None:
        """One block learned: ``steps`` steps (0 where the block had nothing to learn) in
        ``learning_s`` seconds, ``block_s`` seconds in all."""
        self.done += 1
        if steps:
            self.steps += steps
            self.step_s += learning_s
        self.other_s += max(0.0, block_s - (learning_s if steps else 0.0))
