"""The learning of one block of a block reconstruction
(:mod:`~qaev.quantize.learned.reconstruct`): the Adam loop over its rounding variables,
activation step sizes, shifts and gains (BRECQ's objective with QDrop's dropping and
mixing), and how it ends (the last state, the start where the learning ended worse, or with
a holdout the state that reads best on the held-out samples). ``options`` is the block's
:class:`~qaev.quantize.learned.reconstruct.ReconstructOptions` (its ``iters``: the block's
steps)."""
from __future__ import annotations

from typing import Callable

from qaev.quantize.learned._torch import require_torch
from qaev.quantize.learned.adaround import beta_at
from qaev.quantize.learned.block_state import BlockQuantizer, Samples
from qaev.quantize.learned.holdout import CHECKS, BestState, HoldoutSplit
from qaev.quantize.learned.targets import step_target

__all__ = ["learns", "learn_block", "learned_or_start", "learned_on_split"]


def learns(bq: BlockQuantizer, options) -> bool:
    """Whether the block has anything to learn (rounding, step sizes, shifts or gains)."""
    return bool(bq.rounding_parameters() or (options.learn_ranges and bq.act_parameters())
                or bq.shift_parameters() or bq.scale_parameters())


def learn_block(bq: BlockQuantizer, samples: Samples, targets, options, gen,
                check: Callable[[int], None] | None = None) -> None:
    """The Adam loop of one block (BRECQ's objective, QDrop's dropping and mixing);
    ``check(steps)`` is called every ``iters / CHECKS`` steps and after the last."""
    torch = require_torch()
    groups = [{"params": bq.rounding_parameters(), "lr": options.lr}]
    if options.learn_ranges and bq.act_parameters():
        groups.append({"params": bq.act_parameters(), "lr": options.act_lr})
    if bq.shift_parameters():
        groups.append({"params": bq.shift_parameters(), "lr": options.bias_lr})
    if bq.scale_parameters():
        groups.append({"params": bq.scale_parameters(), "lr": options.scale_lr})
    if not learns(bq, options):
        return
    opt = torch.optim.Adam(groups)
    scale = 1.0 / max(bq.before, 1e-30)
    n_weights = max(bq.n_weights, 1)
    every = max(options.iters // CHECKS, 1)
    for step in range(options.iters):
        idx = samples.batch(options.batch_size, gen)
        feeds = samples.mixed(idx, options.mix, gen)
        out = bq.run(feeds, soft=True, drop=options.drop, gen=gen)
        loss = bq.loss(out, step_target(bq, feeds, targets, idx, options.target)) * scale
        beta = beta_at(step, options.iters, options.warmup, options.beta)
        if beta is not None and options.reg_weight > 0:
            loss = loss + options.reg_weight * bq.regulariser(beta) / n_weights
        if options.anchor > 0:
            loss = loss + options.anchor * bq.drift() / n_weights
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if check is not None and ((step + 1) % every == 0 or step + 1 == options.iters):
            check(step + 1)


def learned_on_split(bq: BlockQuantizer, samples: Samples, targets, options, gen,
                     split: HoldoutSplit) -> tuple[float, float, bool, dict]:
    """Learn one block on the learning part of ``split`` and keep the state that reads best
    on its held-out part: the error after on every calibration sample, the share of the
    rounding left undecided when the learning ended, whether the start was kept, and the
    held-out readings (:class:`BlockReport`'s fields)."""
    torch = require_torch()
    best = BestState(bq, split.samples(samples, held=True), split.targets(targets, held=True))
    best.check(0)
    learn_block(bq, split.samples(samples, held=False), split.targets(targets, held=False), options, gen,
                 check=best.check)
    with torch.no_grad():
        undecided = bq.undecided() if options.iters else 0.0
        best.restore()
        after = bq.error(samples, targets)
    return after, undecided, best.step == 0, {"held_before": best.first, "held_after": best.error, "stopped": best.step}


def learned_or_start(bq: BlockQuantizer, samples: Samples, targets, options,
                     gen) -> tuple[float, float, bool]:
    """Learn one block: its error after, the share of its rounding left undecided, and
    whether it kept its start because the learning ended worse than it on the calibration
    samples (then every learned parameter is put back, :meth:`BlockQuantizer.flipped` reads 0)."""
    torch = require_torch()
    began_at = bq.state()
    learn_block(bq, samples, targets, options, gen)
    with torch.no_grad():
        after = bq.error(samples, targets)
        undecided = bq.undecided() if options.iters else 0.0  # no step: the soft weights were never used
        if after > bq.before:
            bq.restore(began_at)
            return bq.before, undecided, True
    return after, undecided, False
