"""Block reconstruction: learned rounding and activation step sizes, block by block.

BRECQ (Li et al., "BRECQ: Pushing the Limit of Post-Training Quantization by Block
Reconstruction", ICLR 2021) learns the rounding of every weight of a block (AdaRound's
variables and regulariser, Nagel et al., ICML 2020; :class:`~qaev.quantize.learned.adaround.SoftRounding`)
against the float block's output, one block after another, each fed by the blocks before
it already quantized. The activation step sizes are learned with them (LSQ, Esser et al.,
"Learned Step Size Quantization", ICLR 2020), starting from the calibrated ranges, the zero
points held. QDrop (Wei et al., "QDrop: Randomly Dropping Quantization for Extremely
Low-bit Post-Training Quantization", ICLR 2022) drops the quantization of each activation
element at random during learning (it is kept float with probability ``drop``) and feeds
the block an element-wise mix of the quantized model's input and the float model's.
With ``learn_scale`` each weight scale (per tensor, channel or block) also gets a learned
gain, as LSQ learns the activations' steps: the integers stay on the grid the rounding
chose, the step moves, which a bias shift cannot do for a channel whose rounding left its
output too large or too small as a whole.

Blocks come from :func:`~qaev.quantize.learned.blocks.cut_blocks`; the block runs in PyTorch
(:class:`~qaev.quantize.learned.torch_graph.TorchGraph`) with the config's activation grids where
:func:`~qaev.quantize.plan.activation_plan` puts ONNX Runtime's Q/DQ pairs. The result is a
:class:`~qaev.quantize.sequential.Fitted` per learned layer (its weight on the layer's grid)
and a range ``(lo, hi)`` per learned activation tensor, which ``config.ranges`` carries and
:func:`~qaev.quantize.weights.activation_params` turns back into the learned scale and zero
point. Every random choice (batches, dropped elements, mixed inputs) draws from one
generator seeded with ``seed``: the same data and seed give the same weights and ranges.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np

from qaev.config import OutputLoss, QuantConfig, Rounding, ScaleRule
from qaev.errors import ConfigError
from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo
from qaev.quantize.learned._torch import require_torch, seeded_generator
from qaev.quantize.learned.block_learning import learned_on_split, learned_or_start, learns
from qaev.quantize.learned.blocks import Block, cut_blocks
from qaev.quantize.learned.block_state import BlockQuantizer, Samples, learns_rounding
from qaev.quantize.learned.holdout import holdout_split
from qaev.quantize.learned.pacing import Pace
from qaev.quantize.learned.targets import TARGETS, fit_targets
from qaev.quantize.layer_inputs import LayerInputs
from qaev.quantize.sequential import Fitted
from qaev.quantize.weights import QuantizedWeight

__all__ = ["ReconstructOptions", "BlockReport", "Reconstruction", "reconstruct", "gptq_start", "STARTS",
           "OUTPUT_LOSSES"]

LOG = logging.getLogger("qaev.learned")

#: What the learning may start from (:attr:`ReconstructOptions.start`).
STARTS = ("nearest", "gptq", "gptq-bc")
#: What the block that ends at the model's output is fitted on (:attr:`ReconstructOptions.output_loss`).
OUTPUT_LOSSES = tuple(loss.value for loss in OutputLoss)


@dataclass(frozen=True, kw_only=True)
class ReconstructOptions:
    """How each block is learned.

    The defaults are BRECQ's schedule shortened to what a 2-core machine allows (BRECQ's
    20000 steps of 32 samples at a learning rate of 1e-3 are out of reach there; with 500
    steps the rounding variables need a larger rate to move), started where GPTQ with bias
    correction ends, with a regulariser strong enough that every rounding variable is at 0
    or 1 when the learning ends: with a weaker one (10, the earlier default) some were still
    between when the learning ended, and the hard rounding lost what the soft weights had
    learned (on EfficientNet-Lite0's first block the learned error ended twice GPTQ with
    bias correction's: docs/results-learned-rounding.md).

    Args:
        iters: Adam steps per block.
        batch_size: calibration samples per step.
        lr: learning rate of the rounding variables.
        act_lr: learning rate of the activation step sizes (their logarithms).
        reg_weight: weight of the rounding regulariser (the block error is divided by its
            value before learning, the regulariser averaged over the block's weights).
        beta: the regulariser's ``beta`` at the end of the warm-up and at the last step.
        warmup: fraction of the steps without the regulariser.
        drop: probability that an activation element skips quantization while learning.
        mix: probability that a block input element comes from the float model.
        anchor: weight of a penalty on each soft rounding's distance from its start
            (:meth:`~qaev.quantize.learned.adaround.SoftRounding.drift`, averaged over the
            block's weights, in the units of the normalised block error): a weight flips away
            from the start's rounding only where the block's error pays for it. 0: none.
        learn_ranges: learn activation step sizes (float scale rule only).
        learn_bias: learn a shift of each layer's output channels with the rounding (a bias
            correction, Nagel et al., ICCV 2019, learned instead of computed; it reaches the
            QDQ model as the ``correction`` of :class:`~qaev.quantize.sequential.Fitted`).
        bias_lr: learning rate of those shifts.
        learn_scale: learn a gain of each weight scale with the rounding (the integers stay on
            their grid; float scale rule only).
        scale_lr: learning rate of those gains (their logarithms).
        joins, max_layers: block size (:func:`~qaev.quantize.learned.blocks.cut_blocks`).
        start: the rounding the learning starts from: ``nearest`` (AdaRound's start: the
            float weights), ``gptq`` (GPTQ's rounding of each layer, which
            :meth:`~qaev.quantize.Quantizer.build` computes from the layer-input statistics)
            or ``gptq-bc`` (that rounding, each learned shift starting at its bias correction).
        output_loss: what the block ending at the model's output is fitted on: ``mse``
            (its output's mean squared error, as every other block) or ``kl`` (the
            Kullback-Leibler divergence of the softmax of each sample's output scores
            from the float model's: for class scores, where what counts is which class wins).
        target: what each block is fitted to (:mod:`qaev.quantize.learned.targets`):
            ``float`` (the float model's block output, so each block also undoes the drift
            the quantized blocks before it left) or ``own`` (the float block on the same
            input as the quantized one: each block copies its own float function).
        holdout: share of the calibration samples each block does not learn from: its state
            is read on them at regular steps (:data:`~qaev.quantize.learned.holdout.CHECKS`,
            the start included) and the one with the lowest hard-rounded error there is kept
            (:mod:`qaev.quantize.learned.holdout`). 0: the last step is kept, or the start
            where the learning ended worse on the calibration samples.
        seed: seeds every random choice.
        steps: the steps of each block in graph order where they are not all ``iters``
            (:attr:`~qaev.config.BlockSettings.steps`; empty: ``iters`` each).
    """

    iters: int = 500
    batch_size: int = 8
    lr: float = 1e-1
    act_lr: float = 1e-3
    reg_weight: float = 1000.0
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    drop: float = 0.5
    mix: float = 0.5
    anchor: float = 0.0
    learn_ranges: bool = True
    learn_bias: bool = True
    bias_lr: float = 1e-3
    learn_scale: bool = False
    scale_lr: float = 1e-3
    joins: int = 1
    max_layers: int = 3
    start: str = "gptq-bc"
    output_loss: str = "mse"
    target: str = "float"
    holdout: float = 0.0
    seed: int = 0
    steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.iters < 0 or any(n < 0 for n in self.steps) or self.batch_size < 1 \
                or not 0 <= self.drop <= 1 or not 0 <= self.mix <= 1 \
                or self.anchor < 0 or self.start not in STARTS or self.output_loss not in OUTPUT_LOSSES \
                or self.target not in TARGETS or not 0 <= self.holdout < 1:
            raise ValueError(f"ReconstructOptions: invalid {self}")

    def planned(self, blocks: int) -> tuple[int, ...]:
        """The steps each of ``blocks`` blocks is to learn: :attr:`steps`, else ``iters`` each."""
        return self.steps or (self.iters,) * blocks


@dataclass(frozen=True)
class BlockReport:
    """One block's output error (mean squared, over the calibration samples).

    Attributes:
        block: the block's name.
        layers: weight layers learned in it.
        before: error at the start (:attr:`ReconstructOptions.start`'s rounding and shifts,
            the calibrated ranges).
        after: error with the learned rounding, shifts and ranges (both fed the quantized
            inputs).
        seconds: wall time of the block.
        undecided: fraction of its rounding variables not at 0 or 1 when the learning
            ended (the soft weights the hard rounding departs from; near 0 when the
            regulariser did its work; 0 without learning steps).
        kept_start: whether the learning ended worse than the start on the calibration
            samples, so the block kept its starting rounding, shifts and ranges.
        flipped: fraction of its learned weights the learning rounded to another grid
            point than its start did (0 where it kept its start).
        held_before, held_after: with :attr:`ReconstructOptions.holdout`, the error on the
            held-out samples at the start and in the state kept (else None).
        stopped: with a holdout, the learning steps of the state kept (0: the start).
        steps: the learning steps the block got (None in results stored before they were
            recorded).
    """

    block: str
    layers: int
    before: float
    after: float
    seconds: float
    undecided: float = 0.0
    kept_start: bool = False
    flipped: float = 0.0
    held_before: float | None = None
    held_after: float | None = None
    stopped: int | None = None
    steps: int | None = None


@dataclass(frozen=True)
class Reconstruction:
    """What :func:`reconstruct` learned.

    Attributes:
        fitted: layer name -> :class:`~qaev.quantize.sequential.Fitted` (``build_qdq(...,
            fitted=...)`` puts them in the QDQ model).
        ranges: activation tensor -> learned ``(lo, hi)``.
        blocks: a :class:`BlockReport` per block.
        seconds: total wall time.
    """

    fitted: Mapping[str, Fitted]
    ranges: Mapping[str, tuple[float, float]]
    blocks: tuple[BlockReport, ...]
    seconds: float

    def config(self, config: QuantConfig) -> QuantConfig:
        """``config`` with the learned ranges in place of the calibrated ones."""
        return config.with_ranges({**dict(config.ranges), **dict(self.ranges)})

    @property
    def steps(self) -> tuple[int | None, ...]:
        """The learning steps each block got, in graph order."""
        return tuple(b.steps for b in self.blocks)


def _starting(model, layers, config, options: ReconstructOptions, start, inputs, weights):
    """The start ``reconstruct`` was given, else the one ``options.start`` names."""
    if start is not None or options.start == "nearest":
        return start
    if inputs is None:
        raise ConfigError(f"block reconstruction: starting from GPTQ (start {options.start!r}) needs the "
                          "layer-input statistics (inputs=...), or ReconstructOptions(start='nearest')")
    return gptq_start(model, layers, config, inputs, cache=weights)


def _prepared(model, layers, config, blocks: Sequence[Block], i: int, samples: Samples,
              options: ReconstructOptions, *, start, inputs, learn_ranges: bool, learn_scale: bool):
    """Block ``i`` set up to learn from its start: its :class:`BlockQuantizer` (with the
    start's error on the calibration samples as ``before``), the float model's outputs of
    the block (the next block's float input), the outputs it is fitted to
    (:func:`~qaev.quantize.learned.targets.fit_targets`) and the side tensors it carries."""
    bq = BlockQuantizer(model, layers, config, blocks[i], carry=_carried(blocks, i), learn_ranges=learn_ranges,
                        learn_bias=options.learn_bias, start=start, start_shift=options.start == "gptq-bc",
                        inputs=inputs, output_loss=options.output_loss, learn_scale=learn_scale)
    with require_torch().no_grad():
        chain, side = bq.float_outputs(samples)
        targets = fit_targets(bq, samples, chain, options.target)
        bq.before = bq.error(samples, targets)
    return bq, chain, targets, side


def _line(r: BlockReport) -> str:
    if r.stopped is not None:
        kept = (f"; held-out error {r.held_before:.4g} -> {r.held_after:.4g}, "
                + ("the start kept" if r.kept_start else f"the state after {r.stopped} steps kept"))
    else:
        kept = "; worse than its start, start kept" if r.kept_start else ""
    return (f"{r.block}: error {r.before:.4g} -> {r.after:.4g} ({r.seconds:.1f} s, {r.steps} steps; "
            f"{r.undecided:.1%} of the rounding undecided, {r.flipped:.1%} moved from its start{kept})")


def reconstruct(model: FloatModel, layers: Sequence[LayerInfo], config: QuantConfig,
                batches: Sequence[Mapping[str, np.ndarray]], *, options: ReconstructOptions | None = None,
                start: Mapping[str, QuantizedWeight] | None = None, inputs: LayerInputs | None = None,
                weights=None, log: Callable[[str], None] | None = None,
                deadline: float | None = None) -> Reconstruction:
    """Learn every block's weight rounding and activation step sizes (module docstring).

    Args:
        model: the float model.
        layers: its quantizable layers, in graph order.
        config: a resolved config (static activations carry their calibrated ranges):
            which layers are quantized and on which grids; the layers whose rounding is
            ``block`` are learned, the others keep their own method's weights.
        batches: the calibration feeds.
        options: learning options.
        start: layer name -> a rounding on the layer's grid to start from; other layers
            start from the float weights (AdaRound's start). Default: as ``options.start``
            says (:func:`gptq_start` from ``inputs`` unless it is ``nearest``).
        inputs: layer-input statistics, for the GPTQ start and for layers other methods
            round with data.
        weights: a :class:`~qaev.quantize.weights.WeightCache` the GPTQ start is read from
            and kept in (the quantizer's, which may hold it already).
        log: called with one line per block (errors before and after, seconds; default:
            the ``qaev.learned`` logger at level INFO).
        deadline: a ``time.monotonic()`` the learning should end by: blocks get fewer steps
            than planned where it runs behind (:mod:`~qaev.quantize.learned.pacing`; each
            block's steps are in its :class:`BlockReport`).

    Returns:
        The :class:`Reconstruction`.

    Raises:
        ConfigError: PyTorch is not installed, ``config`` lacks a calibrated range, the
            learning starts from GPTQ without ``inputs``, or ``options.steps`` does not give
            one count per block.
        ModelError: an operator the interpreter does not know.
    """
    require_torch()
    options = options or ReconstructOptions()
    log = log or LOG.info
    start = _starting(model, layers, config, options, start, inputs, weights)
    began = time.perf_counter()
    gen = seeded_generator(options.seed)
    blocks = cut_blocks(model.proto, layers, joins=options.joins, max_layers=options.max_layers)
    if options.steps and len(options.steps) != len(blocks):
        raise ConfigError(f"block.steps: {len(options.steps)} step counts for the {len(blocks)} blocks this model "
                          "is cut into")
    samples = Samples.from_batches(batches)
    split = holdout_split(samples, options.holdout, gen) if options.holdout > 0 else None
    fitted, ranges, reports = _learn_blocks(model, layers, config, blocks, samples, options, start=start, inputs=inputs,
                                            gen=gen, split=split, pace=Pace(deadline=deadline, blocks=len(blocks)),
                                            log=log)
    return Reconstruction(fitted=fitted, ranges=ranges, blocks=tuple(reports), seconds=time.perf_counter() - began)


def _learn_blocks(model, layers, config: QuantConfig, blocks: Sequence[Block], samples: Samples,
                  options: ReconstructOptions, *, start, inputs, gen, split, pace: Pace, log):
    """:func:`reconstruct`'s learning, block after block: the fitted layers, learned ranges
    and a :class:`BlockReport` per block."""
    torch = require_torch()
    planned = options.planned(len(blocks))
    learn_ranges = options.learn_ranges and config.scale_rule is ScaleRule.FLOAT
    learn_scale = options.learn_scale and config.scale_rule is ScaleRule.FLOAT
    fitted, ranges, reports = {}, {}, []
    for i, block in enumerate(blocks):
        t0 = time.perf_counter()
        bq, chain, targets, side = _prepared(model, layers, config, blocks, i, samples, options, start=start,
                                             inputs=inputs, learn_ranges=learn_ranges, learn_scale=learn_scale)
        block_options, t1 = replace(options, iters=pace.steps_for(planned[i])), time.perf_counter()
        after, undecided, kept, held = ((*learned_or_start(bq, samples, targets, block_options, gen), {})
                                        if split is None
                                        else learned_on_split(bq, samples, targets, block_options, gen, split))
        learning_s = time.perf_counter() - t1
        with torch.no_grad():
            samples = samples.advance(block, chain, bq.quantized_outputs(samples), side)
        fitted.update(bq.fitted())
        ranges.update(bq.ranges() if learn_ranges else {})
        reports.append(BlockReport(block=block.name, layers=len(bq.rounding_parameters()), before=bq.before,
                                   after=after, seconds=time.perf_counter() - t0, undecided=undecided,
                                   kept_start=kept, flipped=bq.flipped(), **held, steps=block_options.iters))
        pace.record(steps=block_options.iters if learns(bq, options) else 0, learning_s=learning_s,
                    block_s=reports[-1].seconds)
        log(f"block {i + 1}/{len(blocks)} {_line(reports[-1])}")
    return fitted, ranges, reports


def gptq_start(model: FloatModel, layers: Sequence[LayerInfo], config: QuantConfig, inputs: LayerInputs, *,
               cache=None) -> dict[str, QuantizedWeight]:
    """GPTQ's rounding (on the config's grid) of every layer whose rounding is ``block``:
    where :attr:`ReconstructOptions.start` ``gptq`` and ``gptq-bc`` start the learning."""
    from qaev.quantize.qdq import quantized_weight

    start = {}
    for layer in layers:
        cfg = config.layer(layer.name)
        if learns_rounding(layer, cfg):
            gptq = replace(cfg, rounding=Rounding.GPTQ, bias_correction=False)
            start[layer.name] = quantized_weight(model, layer, gptq, config, cache, inputs=inputs)
    return start


def _carried(blocks: Sequence[Block], i: int) -> tuple[str, ...]:
    """Side tensors later blocks read that block ``i`` or an earlier one produces."""
    later = {t for b in blocks[i + 1:] for t in b.inputs[1:]}
    return tuple(sorted(later))
