"""Layer-wise learned rounding: AdaRound on qaev's weight grids.

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML 2020.
Each weight gets a continuous variable ``V``; its soft rounding offset is the rectified
sigmoid ``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`` (``zeta = 1.1``,
``gamma = -0.1``), the soft weight ``s (clip(floor(w / s) + h(V) + z, qmin, qmax) - z)``.
``V`` starts where the soft weight equals the float one and minimises the layer-output
reconstruction error plus the rounding regulariser ``lam sum(1 - |2 h(V) - 1|^beta)``,
whose ``beta`` is annealed from 20 to 2 after a warm-up without it, so that every
``h(V)`` ends at 0 or 1; the weight then rounds down where ``V < 0`` and up elsewhere.

The grid (scales, zero points, integer range) is exactly the one
:func:`~qaev.quantize.weights.quantize_weight` picks, whatever its granularity, symmetry,
width (2-8 bits) or range rule; only the choice of grid point changes. The reconstruction
error is taken in its Hessian form: over the calibration input rows ``x`` of the layer
(a Conv's im2col patches, depthwise ones included through the grouped ``(G, R, n)``
view of :mod:`qaev.quantize.rounding`), ``E||dW x||^2 = tr(dW H dW^T)`` with the cached
``H = E[x x^T]`` (:mod:`qaev.quantize.layer_inputs`): every step sees all calibration
rows, no row is stored, and no random draw is made, so the result is deterministic. (Why
not minibatches of rows: measured in ``benchmarks/learned_rounding.py --layer-speed``.)
Per output row the result never reconstructs the calibration outputs worse than GPTQ or
round-to-nearest: a row whose learned rounding would is replaced by the better of those.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from qaev.model.layers import LayerInfo
from qaev.quantize.learned._torch import require_torch
from qaev.quantize.rounding.gptq import gptq_round
from qaev.quantize.rounding.groups import from_groups, reconstruction_error, to_groups
from qaev.quantize.weights import QuantizedWeight, _expand, signed_limits

__all__ = ["AdaRoundOptions", "LayerReport", "SoftRounding", "adaround", "beta_at", "hessian_factor"]

ZETA, GAMMA = 1.1, -0.1

LOG = logging.getLogger("qaev.learned")


@dataclass(frozen=True, kw_only=True)
class AdaRoundOptions:
    """How the rounding variables are learned (defaults chosen on calibration data).

    Args:
        iters: Adam steps.
        lr: Adam learning rate of the rounding variables.
        reg_weight: ``lam``, the weight of the rounding regulariser. The reconstruction
            error is divided by round-to-nearest's and the regulariser averaged over the
            weights, so one value suits layers of any size and output scale.
        beta: ``beta`` at the end of the warm-up and at the last step (annealed linearly).
        warmup: fraction of the steps without the regulariser.
    """

    iters: int = 2000
    lr: float = 1e-2
    reg_weight: float = 10.0
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2

    def __post_init__(self) -> None:
        if self.iters < 1 or self.lr <= 0 or self.reg_weight < 0 or not 0 <= self.warmup < 1:
            raise ValueError(f"AdaRoundOptions: invalid {self}")


@dataclass(frozen=True)
class LayerReport:
    """Per-layer reconstruction errors ``sum_rows d H d^T`` on the calibration data.

    Attributes:
        nearest, gptq, learned: error of round-to-nearest, GPTQ and the learned rounding.
        final: error of the result (per row the best of the three).
        rows_learned: output rows that keep the learned rounding (of ``rows``).
        rows: output rows.
        seconds: wall time of the learning.
    """

    nearest: float
    gptq: float
    learned: float
    final: float
    rows_learned: int
    rows: int
    seconds: float


def beta_at(step: int, iters: int, warmup: float, beta: tuple[float, float]) -> float | None:
    """The regulariser's ``beta`` at ``step``, None during the warm-up (AdaRound's schedule)."""
    start = warmup * iters
    if step < start:
        return None
    progress = (step - start) / max(iters - start, 1)
    return beta[1] + (beta[0] - beta[1]) * max(0.0, 1.0 - progress)


class SoftRounding:
    """Soft-rounded weights on a fixed grid (torch), in the weight's own layout.

    Args:
        w: the float weight.
        grid: a quantized weight whose scales, zero points and width define the grid.
        symmetric: whether the grid is symmetric (its integer range).
        start: integer values to start from (default: ``V`` such that the soft weight is
            ``w``); where one lies further than a step from ``w``, the weight chooses between
            it and the grid point one step nearer ``w``.
        learn_scale: give each scale of the grid (per tensor, channel or block) a learnable
            gain ``exp(g)``, starting at 1: the integers keep their grid, the step size moves
            (a per-channel scale error rounding leaves, which a bias shift cannot correct).
    """

    def __init__(self, w: np.ndarray, grid: QuantizedWeight, *, symmetric: bool, start: np.ndarray | None = None,
                 learn_scale: bool = False):
        torch = require_torch()
        shape = w.shape
        scale = np.broadcast_to(_expand(grid.scale, shape, grid.axis, grid.block_size), shape).astype(np.float32)
        zp = np.broadcast_to(_expand(grid.zero_point.astype(np.float32), shape, grid.axis, grid.block_size), shape)
        self.qmin, self.qmax = signed_limits(grid.bits, symmetric=symmetric)
        floor = np.floor(w / scale)
        if start is None:
            rest = np.clip(w / scale - floor, 0.0, 1.0)
        else:  # the start may lie further than one step from w (GPTQ moves weights): choose around it
            off = np.asarray(start, np.float64) - zp - floor
            floor = floor + np.where(off > 1, off - 1, np.minimum(off, 0))
            rest = np.clip(off, 0.0, 1.0)
        rest = np.clip(rest, 0.01, 0.99)  # keep the starting point off the flat ends of h
        v0 = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
        self.begin = torch.from_numpy(np.ascontiguousarray(rest, dtype=np.float32))  # h(V) at the start
        self.grid = grid
        self.scale = torch.from_numpy(np.ascontiguousarray(scale))
        self.zp = torch.from_numpy(np.array(zp, dtype=np.float32))
        self.floor = torch.from_numpy((floor + np.ascontiguousarray(zp)).astype(np.float32))
        self.v = torch.nn.Parameter(torch.from_numpy(v0.astype(np.float32)))
        n_scales = int(np.asarray(grid.scale).size)
        self.log_gain = torch.nn.Parameter(torch.zeros(n_scales), requires_grad=learn_scale)
        self.scale_index = None
        if learn_scale:  # which scale each weight uses
            index = _expand(np.arange(n_scales).reshape(np.shape(grid.scale)), shape, grid.axis, grid.block_size)
            self.scale_index = torch.from_numpy(np.array(np.broadcast_to(index, shape), dtype=np.int64))

    def gains(self):
        """The learned gain of every weight's scale (``learn_scale`` only)."""
        return self.log_gain.exp()[self.scale_index]

    def h(self):
        """The rectified sigmoid ``h(V)`` in [0, 1]."""
        torch = require_torch()
        return torch.clamp(torch.sigmoid(self.v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def weight(self, *, hard: bool = False):
        """The soft (or, with ``hard``, the finally rounded) dequantized weight."""
        torch = require_torch()
        offset = (self.v >= 0).to(self.v.dtype) if hard else self.h()
        scale = self.scale * self.gains() if self.log_gain.requires_grad else self.scale
        return (torch.clamp(self.floor + offset, self.qmin, self.qmax) - self.zp) * scale

    def regulariser(self, beta: float):
        """``sum(1 - |2 h(V) - 1|^beta)``: zero only when every ``h(V)`` is 0 or 1."""
        return (1.0 - (2.0 * self.h() - 1.0).abs().pow(beta)).sum()

    def drift(self):
        """``sum((h(V) - h0)^2)``: how far the soft rounding has moved from where it started
        (``h0``: the start's rounding decisions, 0.01 or 0.99 as ``V`` starts off the flat
        ends of ``h``, or the float weight's place between its grid points for AdaRound's
        start)."""
        return (self.h() - self.begin).square().sum()

    def flipped(self) -> int:
        """How many weights the hard rounding puts on another grid point than the start's."""
        return int(((self.v >= 0) != (self.begin >= 0.5)).sum())

    def quantized(self) -> QuantizedWeight:
        """The hard rounding as a :class:`QuantizedWeight` on the starting grid (its scales
        times the learned gains)."""
        q = np.clip(self.floor.numpy() + (self.v.detach().numpy() >= 0), self.qmin, self.qmax)
        g = self.grid
        scale = g.scale
        if self.log_gain.requires_grad:
            gain = self.log_gain.detach().exp().numpy().reshape(np.shape(g.scale))
            scale = (np.asarray(g.scale, np.float32) * gain.astype(np.float32)).astype(np.float32)
        return QuantizedWeight(q.astype(g.q.dtype), scale, g.zero_point, g.axis, g.block_size, g.bits)


def _grouped(t, layer: LayerInfo, groups: int):
    """Torch version of :func:`~qaev.quantize.rounding.to_groups`."""
    if layer.op_type == "Conv":
        return t.reshape(groups, t.shape[0] // groups, -1)
    return (t if layer.reduce_axis == 1 else t.t())[None]


def hessian_factor(hessian: np.ndarray, *, rtol: float = 1e-6) -> np.ndarray:
    """``F`` ``(G, n, k)`` with ``F F^T = H`` per group, ``k`` the largest rank over the groups
    (eigenvalues below ``rtol`` times the largest are dropped): ``tr(dW H dW^T) = ||dW F||^2``
    costs ``R n k`` instead of ``R n^2`` where there are fewer calibration rows than inputs
    (a classifier fed one row per image)."""
    vals, vecs = np.linalg.eigh(np.asarray(hessian, np.float64))
    vals = np.where(vals > rtol * np.maximum(vals[:, -1:], 1e-30), vals, 0.0)
    k = max(int((vals > 0).sum(axis=1).max()), 1)
    return np.ascontiguousarray(vecs[:, :, -k:] * np.sqrt(vals[:, None, -k:]), dtype=np.float32)


def _learn(w: np.ndarray, grid: QuantizedWeight, hessian: np.ndarray, layer: LayerInfo, symmetric: bool,
           options: AdaRoundOptions) -> QuantizedWeight:
    torch = require_torch()
    soft = SoftRounding(w, grid, symmetric=symmetric)
    factor = torch.from_numpy(hessian_factor(hessian))
    w_t = torch.from_numpy(np.array(w, np.float32))

    def error(weight):
        return (_grouped(weight - w_t, layer, factor.shape[0]) @ factor).square().sum()

    with torch.no_grad():
        scale = 1.0 / max(float(error(torch.from_numpy(grid.dequantize()))), 1e-30)
    opt = torch.optim.Adam([soft.v], lr=options.lr)
    for step in range(options.iters):
        loss = error(soft.weight()) * scale
        beta = beta_at(step, options.iters, options.warmup, options.beta)
        if beta is not None and options.reg_weight > 0:
            loss = loss + options.reg_weight * soft.regulariser(beta) / soft.v.numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return soft.quantized()


def adaround(w: np.ndarray, nearest: QuantizedWeight, hessian: np.ndarray, *, layer: LayerInfo, symmetric: bool,
             options: AdaRoundOptions | None = None) -> tuple[QuantizedWeight, LayerReport]:
    """Learned rounding of ``w`` onto the grid of ``nearest`` (see the module docstring).

    Args:
        w: the float weight in its ONNX layout.
        nearest: round-to-nearest result for ``w`` (its grid is kept).
        hessian: ``(G, n, n)`` layer-input second moment ``E[x x^T]`` per group.
        layer: the layer ``w`` belongs to (weight layout).
        symmetric: whether the grid is symmetric.
        options: learning options (defaults: :class:`AdaRoundOptions`).

    Returns:
        The rounded weight (same scales, zero points and layout as ``nearest``) and its
        :class:`LayerReport`.

    Raises:
        ConfigError: PyTorch is not installed.
    """
    require_torch()
    options = options or AdaRoundOptions()
    start = time.perf_counter()
    w = np.asarray(w, np.float32)
    learned = _learn(w, nearest, hessian, layer, symmetric, options)
    gptq = gptq_round(w, nearest, hessian, layer=layer, symmetric=symmetric)
    groups, h64 = hessian.shape[0], np.asarray(hessian, np.float64)
    wm = to_groups(w.astype(np.float64), layer, groups)
    cands = [to_groups(c.dequantize().astype(np.float64), layer, groups) for c in (learned, gptq, nearest)]
    errs = np.stack([reconstruction_error(wm - c, h64) for c in cands])  # (3, G, R)
    best = np.argmin(errs, axis=0)  # ties keep the earlier: learned, then GPTQ
    qs = np.stack([to_groups(c.q.astype(np.int32), layer, groups) for c in (learned, gptq, nearest)])
    q = np.take_along_axis(qs, best[None, :, :, None], axis=0)[0]
    result = QuantizedWeight(from_groups(q, layer, w.shape).astype(nearest.q.dtype), nearest.scale,
                             nearest.zero_point, nearest.axis, nearest.block_size, nearest.bits)
    final = np.take_along_axis(errs, best[None], axis=0)[0]
    report = LayerReport(nearest=float(errs[2].sum()), gptq=float(errs[1].sum()), learned=float(errs[0].sum()),
                         final=float(final.sum()), rows_learned=int((best == 0).sum()), rows=int(best.size),
                         seconds=time.perf_counter() - start)
    LOG.info("%s: loss nearest %.4g gptq %.4g learned %.4g -> %.4g (%d/%d rows learned, %.1f s)", layer.name,
             report.nearest, report.gptq, report.learned, report.final, report.rows_learned, report.rows,
             report.seconds)
    return result, report
