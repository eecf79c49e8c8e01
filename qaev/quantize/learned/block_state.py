"""The pieces block reconstruction learns with: the calibration samples at a block's input
(float and quantized versions) and one block with soft-rounded weights and fake-quantized
activations (:mod:`qaev.quantize.learned.reconstruct` drives them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from qaev.config import QuantConfig
from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo
from qaev.quantize.learned._torch import require_torch
from qaev.quantize.learned.adaround import SoftRounding
from qaev.quantize.learned.blocks import Block
from qaev.quantize.learned.torch_graph import TorchGraph
from qaev.quantize.layer_inputs import LayerInputs
from qaev.quantize.plan import activation_plan
from qaev.quantize.qdq import act_params_of, held_weight
from qaev.quantize.rounding.groups import supports_data_aware
from qaev.quantize.rounding.registry import rounding_entry
from qaev.quantize.sequential import Fitted
from qaev.quantize.weights import ActParams, QuantizedWeight, quantize_weight

__all__ = ["Samples", "BlockQuantizer", "ActQuantizer", "bernoulli_mask", "learns_rounding", "softmax_kl"]

_EVAL_BATCH = 32  # samples per no-gradient pass (bounds the memory of the full-data passes)


@dataclass(frozen=True)
class Samples:
    """Calibration samples at a block's input, as chunks of torch tensors.

    Attributes:
        main: name of the block's main input tensor.
        fp: its values in the float model, one tensor per chunk.
        q: its values in the model quantized so far.
        side: other tensors blocks read (masks), float model values, per chunk.
    """

    main: str
    fp: tuple
    q: tuple
    side: Mapping[str, tuple]

    @classmethod
    def from_batches(cls, batches: Sequence[Mapping[str, np.ndarray]], main: str | None = None) -> "Samples":
        """The model's calibration feeds; ``main`` defaults to the first feed name. Chunks of
        equal shapes are joined, so steps can draw any samples."""
        torch = require_torch()
        names = list(batches[0])
        main = main or names[0]
        chunks = {n: [torch.from_numpy(np.array(b[n])) for b in batches] for n in names}
        if all(len({tuple(c.shape[1:]) for c in chunks[n]}) == 1 for n in names):
            chunks = {n: [torch.cat(c)] for n, c in chunks.items()}
        fp = tuple(chunks[main])
        return cls(main=main, fp=fp, q=fp, side={n: tuple(c) for n, c in chunks.items() if n != main})

    def batch(self, size: int, gen) -> tuple[int, object]:
        """A random step batch: (chunk, sample indices) drawn from ``gen``."""
        torch = require_torch()
        chunk = int(torch.randint(len(self.fp), (1,), generator=gen)) if len(self.fp) > 1 else 0
        n = self.fp[chunk].shape[0]
        return chunk, torch.randperm(n, generator=gen)[:min(size, n)]

    def _feeds(self, chunk: int, idx, main) -> dict:
        feeds = {self.main: main}
        feeds.update({k: (v[chunk] if idx is None else v[chunk][idx]) for k, v in self.side.items()})
        return feeds

    @property
    def one_version(self) -> bool:
        """Whether the main input has one version (before any quantized block: the float
        and quantized values are the same tensors)."""
        return all(fp is q for fp, q in zip(self.fp, self.q))

    def mixed(self, at: tuple[int, object], mix: float, gen) -> dict:
        """Feeds of a step batch whose main input takes each element from the float model
        with probability ``mix``, else from the quantized one (QDrop)."""
        torch = require_torch()
        chunk, idx = at
        if self.one_version:
            return self._feeds(chunk, idx, self.q[chunk][idx])
        fp, q = self.fp[chunk][idx], self.q[chunk][idx]
        if mix > 0:
            q = torch.where(bernoulli_mask(q.shape, mix, gen), fp, q)
        return self._feeds(chunk, idx, q)

    def passes(self, *, quantized: bool):
        """Feeds of every sample, in slices of at most ``_EVAL_BATCH``: ``(chunk, slice, feeds)``."""
        for c, values in enumerate(self.q if quantized else self.fp):
            for s in range(0, values.shape[0], _EVAL_BATCH):
                part = slice(s, s + _EVAL_BATCH)
                yield c, part, self._feeds(c, part, values[part])

    def advance(self, block: Block, fp: tuple, q: tuple, side: Mapping[str, tuple]) -> "Samples":
        """The samples at the next block's input."""
        return Samples(main=block.output, fp=fp, q=q, side={**self.side, **side})


def learns_rounding(layer: LayerInfo, cfg) -> bool:
    """Whether block reconstruction learns ``layer``'s rounding under its config ``cfg``: a
    model-scope rounding method on a grid of at most 8 bits, on a layer data-aware rounding
    supports (every other weight stays as the QDQ model holds it)."""
    if cfg is None or cfg.w_bits is None:
        return False
    eff = cfg.effective()
    return eff.w_bits <= 8 and supports_data_aware(layer) and rounding_entry(eff.rounding).model_scope


def softmax_kl(out, target):
    """Kullback-Leibler divergence of ``softmax(out)`` from ``softmax(target)`` over each
    sample's scores (every axis after the first: ``[N, C]`` and ``[N, C, 1, 1]`` alike), one
    value per sample: what a class-score output loses in the ranking of classes (the mean
    squared error weighs every score alike, the losing classes' included)."""
    log_q = out.flatten(1).log_softmax(-1)
    log_p = target.flatten(1).log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def bernoulli_mask(shape, p: float, gen):
    """A boolean mask, each element True with probability ``p`` rounded to 1/256 (random
    bytes compared with ``p * 256``: half the cost of comparing uniform floats)."""
    torch = require_torch()
    threshold = int(round(p * 256))
    return torch.randint(0, 256, tuple(shape), generator=gen, dtype=torch.uint8) < threshold if threshold < 256 \
        else torch.ones(tuple(shape), dtype=torch.bool)


def _fake_quantize(x, scale, zero_point: float, qmax: float):
    """``(clip(round(x / s) + z, 0, qmax) - z) s`` with the straight-through gradient for ``x``
    and LSQ's for ``s``, in PyTorch's fused kernel (one pass each way; half-way values round
    to even, as ONNX Runtime's QuantizeLinear does)."""
    torch = require_torch()
    zp = torch.full((1,), zero_point)
    return torch._fake_quantize_learnable_per_tensor_affine(x, scale.reshape(1), zp, 0, int(qmax), 1.0)


class ActQuantizer:
    """Fake quantization of one activation tensor on an unsigned grid with a learned step
    size (LSQ, Esser et al., ICLR 2020) and a fixed zero point; with ``drop`` each element
    skips quantization with that probability (QDrop, Wei et al., ICLR 2022)."""

    def __init__(self, params: ActParams, *, learn: bool):
        torch = require_torch()
        self.scale0, self.zp, self.qmax = params.scale, float(params.zero_point), float(2**params.bits - 1)
        self.log_gain = torch.nn.Parameter(torch.zeros(()), requires_grad=learn)

    def scale(self):
        """The step size: the calibrated one times ``exp(log_gain)`` (so learning is scale-free)."""
        return self.scale0 * self.log_gain.exp()

    def __call__(self, x, drop: float = 0.0, gen=None):
        torch = require_torch()
        xq = _fake_quantize(x, self.scale(), self.zp, self.qmax)
        if drop > 0:
            return torch.where(bernoulli_mask(x.shape, drop, gen), x, xq)
        return xq

    def range(self) -> tuple[float, float]:
        """``(lo, hi)`` from which :func:`~qaev.quantize.weights.activation_params` gives back
        this step size and zero point."""
        s = float(np.float32(self.scale().item()))
        return (0.0 - self.zp) * s, (self.qmax - self.zp) * s


class BlockQuantizer:
    """One block in PyTorch with soft-rounded weights and fake-quantized activations.

    Args:
        model: the float model.
        layers: its layers.
        config: the resolved config (grids, activation plan and ranges).
        block: the block.
        carry: side tensors later blocks read; those the block produces are returned too.
        learn_ranges: whether activation step sizes are learnable.
        learn_bias: whether each learned layer's output channels get a learnable shift.
        learn_scale: whether each learned layer's weight scales get a learnable gain
            (:class:`~qaev.quantize.learned.adaround.SoftRounding`).
        start: layer name -> a rounding on the layer's grid to start from.
        start_shift: start each learned shift at the bias correction of ``start``'s rounding.
        inputs: layer-input statistics for the layers other methods round with data.
        output_loss: ``kl`` fits a block whose output is the model's on the softmax's
            Kullback-Leibler divergence (:func:`softmax_kl`); otherwise, and for every
            other block, the mean squared error.
    """

    def __init__(self, model: FloatModel, layers: Sequence[LayerInfo], config: QuantConfig, block: Block, *,
                 carry: Sequence[str] = (), learn_ranges: bool = True, learn_bias: bool = False,
                 start: Mapping[str, QuantizedWeight] | None = None, start_shift: bool = False,
                 inputs: LayerInputs | None = None, output_loss: str = "mse", learn_scale: bool = False) -> None:
        self._torch = require_torch()
        self.inputs = inputs
        produced = {t for n in model.proto.graph.node if n.name in set(block.nodes) for t in n.output}
        self.block, self.carry = block, tuple(t for t in carry if t in produced)
        self.graph = TorchGraph(model.proto, inputs=block.inputs, outputs=(block.output, *self.carry))
        self.soft: dict[str, tuple[str, SoftRounding]] = {}
        self.started = {n: qw for n, qw in (start or {}).items() if n in block.layers} if start_shift else {}
        self.fixed: dict[str, object] = {}
        self.learn_scale = learn_scale
        by_name = {layer.name: layer for layer in layers}
        for name in block.layers:
            self._weight(model, by_name[name], config, (start or {}).get(name))
        self.shifts = self._shifts(model, by_name, config) if learn_bias else {}
        graph_inputs = {v.name for v in model.proto.graph.input}
        outputs = {o.name for o in model.proto.graph.output}
        self.kl = output_loss == "kl" and block.output in outputs
        plan = activation_plan(config, layers).bits
        self.acts = {t: ActQuantizer(act_params_of(config, t, bits), learn=learn_ranges and t not in outputs)
                     for t, bits in plan.items() if t in produced or (t in block.inputs and t in graph_inputs)}
        self.n_weights = sum(s.v.numel() for _, s in self.soft.values())
        self.before = float("nan")

    def _weight(self, model: FloatModel, layer: LayerInfo, config: QuantConfig, start) -> None:
        cfg = config.layer(layer.name)
        if cfg is None or cfg.w_bits is None:
            return
        eff = cfg.effective()
        w = model.weight(layer.weight)
        if learns_rounding(layer, cfg):
            grid = quantize_weight(w, bits=eff.w_bits, granularity=eff.granularity, symmetric=eff.symmetric,
                                   scale_rule=config.scale_rule, channel_axis=layer.channel_axis,
                                   reduce_axis=layer.reduce_axis, weight_range=eff.weight_range)
            begin = None if start is None else start.q.astype(np.float32)
            self.soft[layer.weight] = (layer.name, SoftRounding(w, grid, symmetric=eff.symmetric, start=begin,
                                                                learn_scale=self.learn_scale))
        else:  # other methods' layers, 16-bit, lookup and codebook weights stay as the QDQ model holds them
            fixed = held_weight(model, layer, cfg, config, inputs=self.inputs)
            self.fixed[layer.weight] = self._torch_from(fixed)

    def _shifts(self, model: FloatModel, by_name: Mapping[str, LayerInfo], config: QuantConfig) -> dict[str, tuple]:
        """Per learned layer, a learnable shift of its output channels (a bias correction
        learned with the rounding): raw output tensor -> (layer, parameter, alpha, is_conv).
        Not for a MatMul with static activations (see :func:`qaev.quantize.plan.layer_problem`)."""
        from qaev.config import ActMode
        from qaev.quantize.bias_correction import alpha_beta

        nodes = {n.name: n for n in model.proto.graph.node}
        out = {}
        for layer_name, _ in self.soft.values():
            layer, node = by_name[layer_name], nodes[layer_name]
            if layer.op_type == "MatMul" and config.layer(layer_name).act is ActMode.STATIC:
                continue
            channels = layer.weight_shape[layer.channel_axis]
            alpha = alpha_beta(layer, node)[0]
            begin = self._start_shift(model, layer, alpha)
            shift = self._torch.zeros(channels) if begin is None else self._torch_from(begin)
            out[node.output[0]] = (layer_name, self._torch.nn.Parameter(shift), alpha, layer.op_type == "Conv")
        return out

    def _start_shift(self, model: FloatModel, layer: LayerInfo, alpha: float):
        """The bias correction of a layer's starting rounding (None for the float start,
        which shifts nothing, or without layer-input statistics)."""
        from qaev.quantize.bias_correction import output_correction

        if layer.name not in self.started or self.inputs is None:
            return None
        stats = self.inputs.get(layer)
        w = model.weight(layer.weight)
        return output_correction(w, self.started[layer.name], stats, layer=layer) / alpha

    def _shifted(self, name: str, value):
        found = self.shifts.get(name)
        if found is None:
            return value
        _, shift, alpha, conv = found
        view = [1, -1] + [1] * (value.dim() - 2) if conv else [-1]
        return value + alpha * shift.reshape(view)

    @staticmethod
    def _torch_from(a: np.ndarray):
        return require_torch().from_numpy(np.array(a, np.float32))

    def rounding_parameters(self) -> list:
        return [s.v for _, s in self.soft.values()]

    def act_parameters(self) -> list:
        return [q.log_gain for q in self.acts.values() if q.log_gain.requires_grad]

    def shift_parameters(self) -> list:
        return [p for _, p, _, _ in self.shifts.values()]

    def scale_parameters(self) -> list:
        return [s.log_gain for _, s in self.soft.values() if s.log_gain.requires_grad]

    def state(self) -> list:
        """Copies of every learned parameter (:meth:`restore` puts them back)."""
        return [p.detach().clone() for p in self._parameters()]

    def restore(self, state: list) -> None:
        with self._torch.no_grad():
            for p, saved in zip(self._parameters(), state):
                p.copy_(saved)

    def _parameters(self) -> list:
        return (self.rounding_parameters() + [q.log_gain for q in self.acts.values()] + self.shift_parameters()
                + self.scale_parameters())

    def undecided(self) -> float:
        """Fraction of the rounding variables not yet at 0 or 1 (the soft weights the hard
        rounding departs from)."""
        h = [s.h().detach().flatten() for _, s in self.soft.values()]
        if not h:
            return 0.0
        h = self._torch.cat(h)
        return float(((h > 0.01) & (h < 0.99)).float().mean())

    def regulariser(self, beta: float):
        return sum(s.regulariser(beta) for _, s in self.soft.values())

    def drift(self):
        """:meth:`SoftRounding.drift` summed over the block's learned weights."""
        return sum(s.drift() for _, s in self.soft.values())

    def flipped(self) -> float:
        """Fraction of the block's learned weights rounded to another grid point than the start's."""
        return sum(s.flipped() for _, s in self.soft.values()) / max(self.n_weights, 1)

    def run(self, feeds: Mapping[str, object], *, soft: bool, drop: float = 0.0, gen=None, keep_all: bool = False):
        """The block's main output (or every output with ``keep_all``), quantized."""
        weights = {name: s.weight(hard=not soft) for name, (_, s) in self.soft.items()}
        weights.update(self.fixed)
        acts, shifted = self.acts, self._shifted

        def hook(name, value):
            quantizer = acts.get(name)
            value = shifted(name, value)
            return value if quantizer is None else quantizer(value, drop, gen)

        out = self.graph.run(feeds, weights=weights, act=hook)
        return out if keep_all else out[self.block.output]

    def float_outputs(self, samples: Samples, *, quantized: bool = False) -> tuple[tuple, dict[str, tuple]]:
        """The float block's main output and carried side tensors on every sample (chunks),
        fed the float model's inputs, or with ``quantized`` the quantized model's."""
        parts: dict[int, list] = {}
        side: dict[str, dict[int, list]] = {t: {} for t in self.carry}
        for c, _, feeds in samples.passes(quantized=quantized):
            out = self.graph.run(feeds)
            parts.setdefault(c, []).append(out[self.block.output])
            for t in self.carry:
                side[t].setdefault(c, []).append(out[t])
        cat = self._torch.cat
        return (tuple(cat(parts[c]) for c in sorted(parts)),
                {t: tuple(cat(v[c]) for c in sorted(v)) for t, v in side.items()})

    def quantized_outputs(self, samples: Samples) -> tuple:
        """The quantized block's main output (hard rounding, no dropping) on every sample."""
        parts: dict[int, list] = {}
        for c, _, feeds in samples.passes(quantized=True):
            parts.setdefault(c, []).append(self.run(feeds, soft=False))
        return tuple(self._torch.cat(parts[c]) for c in sorted(parts))

    def _terms(self, out, target):
        """The terms :meth:`loss` averages: squared errors per element, or :func:`softmax_kl`
        per sample for the model's output under ``kl``."""
        return softmax_kl(out, target) if self.kl else (out - target).square()

    def loss(self, out, target):
        """What the block is fitted on: the mean squared error of ``out`` against
        ``target``, or the mean :func:`softmax_kl` for the model's output under ``kl``."""
        return self._terms(out, target).mean()

    def error(self, samples: Samples, targets: tuple) -> float:
        """:meth:`loss` of the quantized block (hard rounding) against ``targets`` over
        every sample."""
        total, count = 0.0, 0
        for c, part, feeds in samples.passes(quantized=True):
            each = self._terms(self.run(feeds, soft=False).double(), targets[c][part].double())
            total += float(each.sum())
            count += each.numel()
        return total / max(count, 1)

    def fitted(self) -> dict[str, Fitted]:
        shifts = {layer: p.detach().double().numpy() for layer, p, _, _ in self.shifts.values()}
        return {layer: Fitted(s.quantized(), shifts.get(layer)) for layer, s in self.soft.values()}

    def ranges(self) -> dict[str, tuple[float, float]]:
        return {t: q.range() for t, q in self.acts.items() if q.log_gain.requires_grad}
