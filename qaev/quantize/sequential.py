"""Fitting each weight layer to the float model's outputs from quantized inputs.

With ``rounding_inputs: quantized`` (:class:`~qaev.config.RoundingInputs`) the layers are
fitted one at a time in graph order. For layer ``k``, with ``x`` its input rows in the float
model and ``x~`` its input rows in the model whose earlier layers are already quantized as
the config says (their weights fitted here, their activations quantized), over the
calibration data:

1. Refit: ``W* = argmin E||W x - W* x~||^2 + lam ||W* - W||^2``, i.e. per output row
   ``w* = (H~ + lam I)^-1 (C w + lam w)`` with ``H~ = E[x~ x~^T]``, ``C = E[x~ x^T]`` and
   ``lam`` GPTQ's dampening (1 % of the mean diagonal of ``H~``). The first layer, whose
   inputs are the model's, keeps ``W* = W``.
2. Round ``W*`` onto its grid (the layer's bits, granularity, symmetry and range rule, taken
   from ``W*``): with GPTQ and ``H~`` where the layer's rounding is ``gptq``, else to nearest.
3. Where the layer corrects its bias, add ``W E[x] - W_q E[x~]``: its mean output over the
   calibration data is then the float layer's.

Error made upstream is compensated downstream instead of compounding, the idea behind
fitting to quantized inputs in sequential post-training quantization (e.g. Nagel et al.,
"Up or Down? Adaptive Rounding", ICML 2020, section 4; Li et al., "BRECQ", ICLR 2021).
Layers data-aware rounding does not apply to (lookups, ConvTranspose, codebooks, activation
MatMuls) are quantized as usual and the layers after them see their effect. ``x~`` is read
where the layer's input tensor is produced, before any quantization of the layer's own
input activation. The cost: one pass over the calibration samples per fitted layer, when
the model is built, and the weights depend on every earlier layer's settings, so nothing is
shared between configs.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx

from qaev.config import QuantConfig
from qaev.errors import DataError
from qaev.model.graph import FloatModel
from qaev.model.layers import LayerInfo
from qaev.quantize.layer_inputs import LayerInputs, RowMoments, batch_rows, fetch_session
from qaev.quantize.layer_inputs import InputStats
from qaev.quantize.rounding.grid import round_weight
from qaev.quantize.rounding.groups import from_groups, supports_data_aware, to_groups
from qaev.quantize.rounding.registry import rounding_entry
from qaev.quantize.weights import QuantizedWeight

__all__ = ["Fitted", "fit_sequential", "fitted_layers"]

#: Ridge weight of the refit, a fraction of the mean diagonal of the quantized-input moment.
DAMP = 0.01


@dataclass(frozen=True)
class Fitted:
    """One layer fitted to quantized inputs.

    Attributes:
        weight: the rounded weight (on the grid of the refitted weight).
        correction: what to add to the layer's output (per output channel), or None where
            the layer does not correct its bias.
    """

    weight: QuantizedWeight
    correction: np.ndarray | None


def fitted_layers(config: QuantConfig, layers: Sequence[LayerInfo]) -> list[LayerInfo]:
    """The layers of ``config`` that are fitted to quantized inputs, in graph order: quantized
    Conv/Gemm/MatMul weight layers on a scalar grid (not a codebook)."""
    out = []
    for layer in layers:
        cfg = config.layer(layer.name)
        if cfg is not None and cfg.w_bits is not None and supports_data_aware(layer) \
                and rounding_entry(cfg.effective().rounding).on_grid:
            out.append(layer)
    return out


def _refit(w: np.ndarray, hh: np.ndarray, hc: np.ndarray) -> np.ndarray:
    """Rows of ``w`` ``(G, R, n)`` refitted to map quantized inputs to the float outputs
    (``hh = E[x~ x~^T]``, ``hc = E[x~ x^T]``)."""
    n = hh.shape[-1]
    lam = DAMP * np.maximum(np.einsum("gii->g", hh) / n, 1e-12)
    a = hh + lam[:, None, None] * np.eye(n)
    rhs = np.einsum("gnm,grm->gnr", hc, w) + lam[:, None, None] * np.swapaxes(w, 1, 2)
    return np.swapaxes(np.linalg.solve(a, rhs), 1, 2)


def _fit_layer(model: FloatModel, layer: LayerInfo, config: QuantConfig, m: RowMoments) -> Fitted:
    """``m``: moments of the quantized-input rows, paired with the float-input rows."""
    eff = config.layer(layer.name).effective()
    w = np.asarray(model.weight(layer.weight), np.float64)
    groups = m.h.shape[0]
    hh, hc = m.h / m.rows, m.cross / m.rows
    w_groups = to_groups(w, layer, groups)
    refit = from_groups(_refit(w_groups, hh, hc), layer, w.shape).astype(np.float32)
    qw = round_weight(refit, layer, eff, scale_rule=config.scale_rule,
                      stats=lambda: InputStats(hessian=hh, mean=m.s / m.rows, rows=m.rows))
    correction = None
    if eff.bias_correction:
        wq = to_groups(qw.dequantize().astype(np.float64), layer, groups)
        correction = (np.einsum("grn,gn->gr", w_groups, m.s_paired / m.rows)
                      - np.einsum("grn,gn->gr", wq, m.s / m.rows)).reshape(-1)
    return Fitted(qw, correction)


def _fetch(session, from_feed: set[str], tensor: str, batch: Mapping[str, np.ndarray], where: str) -> np.ndarray:
    if tensor in from_feed:
        return np.asarray(batch[tensor])
    try:
        return session.run([tensor], dict(batch))[0]
    except Exception as exc:
        raise DataError(f"{where}: the model rejected a calibration batch: {exc}") from None


def fit_sequential(model: FloatModel, layers: Sequence[LayerInfo], config: QuantConfig, inputs: LayerInputs, *,
                   build: Callable[[QuantConfig, Mapping[str, Fitted]], onnx.ModelProto],
                   threads: int = 1) -> dict[str, Fitted]:
    """Fit every layer of :func:`fitted_layers` in graph order (see the module docstring).

    Args:
        model: the float model.
        layers: its layers, in graph order.
        config: a resolved config (static activations carry their ranges).
        inputs: the calibration data behind the layer-input statistics (its
            :meth:`~qaev.quantize.layer_inputs.LayerInputs.batches`).
        build: builds the QDQ model of a partial config with the layers fitted so far.
        threads: ONNX Runtime intra-op threads.

    Returns:
        Layer name -> :class:`Fitted`.
    """
    from tqdm import tqdm

    chosen = fitted_layers(config, layers)
    if not chosen:
        return {}
    batches = inputs.batches()
    if not batches:
        raise DataError("fitting layers to quantized inputs: calibration data is empty")
    nodes = {n.name: n for n in model.proto.graph.node}
    float_session, float_feed = fetch_session(model.proto, [layer.act_inputs[0] for layer in chosen], threads=threads)
    order = {layer.name: i for i, layer in enumerate(layers)}
    fitted: dict[str, Fitted] = {}
    for layer in tqdm(chosen, desc="fitting layers to quantized inputs", unit="layer", disable=None, leave=False):
        tensor = layer.act_inputs[0]
        before = {name: cfg for name, cfg in config.layers.items() if order.get(name, len(layers)) < order[layer.name]}
        partial = build(replace(config, layers=before), fitted)
        session, feed = fetch_session(partial, [tensor], threads=threads)
        moments, node = RowMoments(), nodes[layer.name]
        for batch in batches:
            x = _fetch(float_session, float_feed, tensor, batch, layer.name)
            xq = _fetch(session, feed, tensor, batch, layer.name)
            moments.add(batch_rows(xq, layer, node, batch), paired=batch_rows(x, layer, node, batch))
        fitted[layer.name] = _fit_layer(model, layer, config, moments)
    return fitted
