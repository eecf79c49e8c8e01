"""The file a user ships: the evaluation graph with sub-byte weights stored natively.

- Weight-only layers (float activations on both sides, no neighbour's static grid on
  them) are built in the folded form (:mod:`qaev.quantize.folded`): ONNX Runtime
  dequantizes their weights once, when the session loads, and runs them as float layers.
  Their integers are stored as ONNX ``INT2`` for grids of at most 2 bits (the model's
  opset is raised to 25 for it), as bit planes for 3- and 6-bit grids (3 or 6 bits a
  weight, rebuilt to int8 by a constant subgraph folded with the rest:
  :mod:`qaev.quantize.bitplanes`) and as ``INT4`` for 4-bit grids.
- Weights read by a ``DequantizeLinear`` (layers beside static activations) are stored as
  ``INT4`` at 4 bits or fewer: there ONNX Runtime fuses the layer into integer kernels
  that reject INT2. A block-wise ``DequantizeLinear`` feeding such a weight-only ``MatMul``
  becomes a kernel that returns wrong values for INT2, so those MatMuls are written as
  ONNX Runtime's ``com.microsoft.MatMulNBits`` (2-bit for 2-bit grids, else 4-bit), the
  kernel the runtime fuses the evaluation graph's group into.
- Lookup tables are written as evaluated: packed quantized rows gathered before they are
  dequantized (:mod:`qaev.quantize.lookup`), or codebook codes, vectors and row scales.

Every form computes exactly the values of the evaluation graph.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper

from qaev.config import ActMode, QuantConfig
from qaev.model.graph import converted_to_opset
from qaev.model.layers import LayerInfo
from qaev.quantize.bitplanes import PLANE_BITS, planes_tensor
from qaev.quantize.folded import WeightSource, weight_source
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.lookup import gathers_first, pack_bits
from qaev.quantize.names import compact_names
from qaev.quantize.plan import activation_plan, runs_as_nbits
from qaev.quantize.qdq import quantized_weight
from qaev.quantize.rounding.registry import rounding_entry
from qaev.quantize.quantizer import Quantizer
from qaev.quantize.weights import QuantizedWeight

__all__ = ["export_model", "exports_nbits"]

_MS_DOMAIN = "com.microsoft"


_NARROW = {2: ml_dtypes.int2, 4: ml_dtypes.int4}
_INT2_OPSET = 25  # Cast and DequantizeLinear take INT2 from opset 25


def _narrowed(tensor: onnx.TensorProto, bits: int) -> onnx.TensorProto:
    values = numpy_helper.to_array(tensor)
    return numpy_helper.from_array(values.astype(np.int8).astype(_NARROW[bits]), tensor.name)


def _matmulnbits(ed: GraphEditor, layer: LayerInfo, node: onnx.NodeProto, qw: QuantizedWeight, *,
                 accuracy: int = 0) -> None:
    bits = 2 if qw.bits <= 2 else 4
    k, n = qw.q.shape
    block = qw.block_size
    n_blocks = math.ceil(k / block)
    pad = n_blocks * block - k
    offset = 1 << (bits - 1)  # signed grid -> unsigned field
    u = qw.q.astype(np.int16) + offset
    zp = qw.zero_point.astype(np.int16) + offset  # [n_blocks, N]
    if pad:
        u = np.concatenate([u, np.repeat(zp[-1:], pad, axis=0)], axis=0)  # padding dequantizes to 0
    blocks = u.T.reshape(n, n_blocks, block)  # [N, n_blocks, block]
    inputs = [node.input[0], ed.add_init(f"{layer.name}.B", pack_bits(blocks, bits)),
              ed.add_init(f"{layer.name}.scales", np.ascontiguousarray(qw.scale.T).astype(np.float32))]
    if np.any(qw.zero_point != 0):
        inputs.append(ed.add_init(f"{layer.name}.zero_points", pack_bits(zp.T, bits)))
    extra = {"accuracy_level": accuracy} if accuracy else {}
    ed.add_node("MatMulNBits", inputs, [node.output[0]], name=f"{layer.name}.MatMulNBits", domain=_MS_DOMAIN,
                K=k, N=n, bits=bits, block_size=block, **extra)
    ed.remove(node)




def _stored_as_built(layer: LayerInfo, cfg) -> bool:
    """Layers whose weights the file keeps in the evaluation graph's own form."""
    if cfg is None or cfg.w_bits is None or cfg.act is ActMode.DYNAMIC:
        return True  # dynamic layers feed MatMulInteger int8 directly: nothing to narrow
    if cfg.w_bits > 4 and cfg.w_bits not in PLANE_BITS:
        return True  # 8/16-bit weights are stored as evaluated
    if not rounding_entry(cfg.effective().rounding).on_grid:
        return True  # a table method's own representation (8-bit codes): written as evaluated
    return gathers_first(layer, cfg.effective().granularity.block_size)  # packed lookup table already


class _Storage:
    """Narrows the integer weights of a built graph, each initializer once."""

    def __init__(self, ed: GraphEditor) -> None:
        self.ed = ed
        self.inits = {i.name: i for i in ed.model.graph.initializer}
        self.narrowed: set[str] = set()
        self.planed: dict[str, str] = {}  # weight initializer -> its tensor rebuilt from bit planes

    def store(self, source: WeightSource, bits: int, *, name: str) -> None:
        """Store the weight read by ``source`` (a ``bits``-bit grid) at its width: bit planes
        for folded 3- and 6-bit weights, INT2 for folded grids of at most 2 bits, INT4 for
        other grids of at most 4 bits; 6-bit weights beside static activations stay int8."""
        values = self.inits[source.values]
        if source.folded and bits in PLANE_BITS and values.data_type == onnx.TensorProto.INT8:
            if source.values not in self.planed:
                self.planed[source.values] = planes_tensor(self.ed, numpy_helper.to_array(values), bits, name=name)
            source.node.input[0] = self.planed[source.values]
            return
        if bits > 4:
            return
        width = 2 if source.folded and bits <= 2 else 4
        for tensor in (source.values, source.zero_point):
            if tensor is not None and tensor not in self.narrowed:
                self.inits[tensor].CopyFrom(_narrowed(self.inits[tensor], width))
                self.narrowed.add(tensor)


def _grid_weight(quantizer: Quantizer, layer: LayerInfo, cfg, resolved: QuantConfig, fitted) -> QuantizedWeight:
    """The layer's weight as the evaluation graph holds it (a model-scope fit, else its own method's)."""
    fit = fitted.get(layer.name)
    if fit is not None:
        return fit.weight
    return quantized_weight(quantizer.model, layer, cfg, resolved, quantizer.weights, inputs=quantizer.inputs)


def _weight_dequantization(ed: GraphEditor, node: onnx.NodeProto, layer: LayerInfo) -> onnx.NodeProto:
    """The DequantizeLinear feeding ``node``'s weight input (found by the edge, not by name)."""
    dq = ed.producer(node.input[0 if layer.op_type == "Gather" else 1])
    if dq is None or dq.op_type != "DequantizeLinear":
        raise RuntimeError(f"export: the weight of layer {layer.name!r} is not dequantized by a DequantizeLinear")
    return dq


def exports_nbits(layers, config: QuantConfig) -> bool:
    """Whether some layer of ``config`` is written as ``MatMulNBits`` (then the exported file,
    not the evaluation graph, is what runs at the shipped speed: ONNX Runtime fuses the
    evaluation graph's Q/DQ groups into slower kernels at small batches)."""
    plan = activation_plan(config, layers)
    for layer in layers:
        cfg = config.layer(layer.name)
        if cfg is not None and rounding_entry(cfg.effective().rounding).on_grid \
                and runs_as_nbits(layer, cfg, plan, config):
            return True
    return False


def export_model(quantizer: Quantizer, config: QuantConfig, *, compact: bool = False) -> onnx.ModelProto:
    """The deployable model of ``config``.

    Args:
        quantizer: the engine of the float model (statistics needed only when the config
            carries no ranges).
        config: the config to export.
        compact: name internal tensors by short counters and blank node names
            (:func:`qaev.quantize.names.compact_names`): a smaller file, harder to read.

    Returns:
        A model whose outputs equal the evaluation graph's, with native INT2/INT4 weights,
        bit planes and MatMulNBits where they apply.
    """
    resolved = quantizer.resolve(config)
    ed = GraphEditor(quantizer.build(resolved, resolved=True))
    storage = _Storage(ed)
    plan = activation_plan(resolved, quantizer.layers)
    fitted = quantizer.learned(resolved)[1] or {}  # kept from the build: no second fit
    for layer in quantizer.layers:
        cfg = resolved.layer(layer.name)
        if _stored_as_built(layer, cfg):
            continue
        node = ed.node(layer.name)
        if runs_as_nbits(layer, cfg, plan, resolved):
            dq = _weight_dequantization(ed, node, layer)
            _matmulnbits(ed, layer, node, _grid_weight(quantizer, layer, cfg, resolved, fitted),
                         accuracy=resolved.nbits_accuracy)
            ed.remove(dq)
            continue
        source = weight_source(ed, node.input[0 if layer.op_type == "Gather" else 1], layer=layer.name)
        storage.store(source, cfg.w_bits, name=f"{layer.name}.w")
    out = ed.finish()
    if (any(n.domain == _MS_DOMAIN for n in out.graph.node)
            and not any(o.domain == _MS_DOMAIN for o in out.opset_import)):
        out.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    if any(i.data_type == onnx.TensorProto.INT2 for i in out.graph.initializer):
        out = converted_to_opset(out, _INT2_OPSET, where="export (INT2 weights)")
    return compact_names(out) if compact else out
