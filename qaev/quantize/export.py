"""The file a user ships: the evaluation graph with sub-byte weights stored natively.

- Weights of at most 2 bits in layers without quantized activations around them are
  stored as ONNX ``INT2`` (the model's opset is raised to 25 for it), other weights of at
  most 4 bits as ``INT4`` (opset 21), so the file size reflects the bits. INT4 stays where
  ONNX Runtime 1.32 mishandles INT2: next to static activations (its own or a neighbour's)
  it fuses the layer into integer kernels that reject INT2, and a block-wise
  ``DequantizeLinear`` feeding a ``MatMul`` becomes a kernel that returns wrong values for
  it (those MatMuls are written as MatMulNBits instead, below; the per-axis MatMul, Conv
  and whole-table Gather forms are exact).
- Weight-only, block-wise MatMuls with at most 4-bit weights become ONNX Runtime's
  ``com.microsoft.MatMulNBits`` (2-bit for 2-bit grids, else 4-bit).
- Other 3- and 6-bit weights of layers without quantized activations around them are
  stored as bit planes (:mod:`qaev.quantize.bitplanes`): 3 or 6 bits a weight, rebuilt
  to int8 by a constant subgraph that ONNX Runtime folds when the session loads.
- Lookup tables are written as evaluated: packed quantized rows gathered before they are
  dequantized (:mod:`qaev.quantize.lookup`), or codebook codes, vectors and row scales.

Both forms dequantize to exactly the values of the evaluation graph.
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
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.lookup import gathers_first, pack_bits
from qaev.quantize.names import compact_names
from qaev.quantize.plan import activation_plan
from qaev.quantize.qdq import quantized_weight
from qaev.quantize.rounding.registry import rounding_entry
from qaev.quantize.quantizer import Quantizer
from qaev.quantize.weights import QuantizedWeight

__all__ = ["export_model", "exports_nbits"]

_MS_DOMAIN = "com.microsoft"


_NARROW = {2: ml_dtypes.int2, 4: ml_dtypes.int4}
_INT2_OPSET = 25  # DequantizeLinear takes INT2 from opset 25


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


def _isolated(layer: LayerInfo, quantized: set[str]) -> bool:
    """Whether ``layer``'s inputs and output stay float (no neighbour's static activations
    either: ``quantized`` are the tensors that get Q/DQ)."""
    return not ({*layer.act_inputs, layer.output} & quantized)


def _storage_bits(layer: LayerInfo, cfg, quantized: set[str]) -> int:
    """INT2 for grids of at most 2 bits in isolated layers (:func:`_isolated`), except
    block-wise ones feeding a MatMul/Gemm (see the module notes); INT4 otherwise."""
    if cfg.w_bits <= 2 and _isolated(layer, quantized) and (cfg.granularity.block_size is None
                                                            or layer.op_type == "Gather"):
        return 2
    return 4


def _planes_apply(layer: LayerInfo, cfg, quantized: set[str], weight: onnx.TensorProto) -> bool:
    """3- and 6-bit int8 weights of isolated layers are stored as bit planes
    (:mod:`qaev.quantize.bitplanes`); beside static activations they stay INT4/INT8, where
    ONNX Runtime's integer kernels take them as they are."""
    return (cfg.w_bits in PLANE_BITS and _isolated(layer, quantized)
            and weight.data_type == onnx.TensorProto.INT8)


def _nbits_eligible(layer: LayerInfo, cfg) -> bool:
    return (layer.op_type == "MatMul" and len(layer.weight_shape) == 2 and cfg.act is ActMode.FLOAT
            and cfg.w_bits is not None and cfg.w_bits <= 4 and cfg.granularity.block_size is not None)


def exports_nbits(layers, config: QuantConfig) -> bool:
    """Whether some layer of ``config`` is written as ``MatMulNBits`` (then the exported file,
    not the evaluation graph, is what runs at the shipped speed: ONNX Runtime fuses the
    evaluation graph's Q/DQ groups into slower kernels at small batches)."""
    for layer in layers:
        cfg = config.layer(layer.name)
        if cfg is not None and rounding_entry(cfg.effective().rounding).on_grid and _nbits_eligible(layer, cfg):
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
        A model whose outputs equal the evaluation graph's, with native INT2/INT4 weights
        and MatMulNBits where they apply.
    """
    resolved = quantizer.resolve(config)
    proto = quantizer.build(resolved, resolved=True)
    ed = GraphEditor(proto)
    inits = {i.name: i for i in ed.model.graph.initializer}
    converted = set()
    planed: dict[str, str] = {}  # weight initializer -> its tensor rebuilt from bit planes
    quantized = set(activation_plan(resolved, quantizer.layers).bits)
    for layer in quantizer.layers:
        cfg = resolved.layer(layer.name)
        if cfg is None or cfg.w_bits is None or cfg.act is ActMode.DYNAMIC:
            continue  # dynamic layers feed MatMulInteger int8 directly: no DequantizeLinear to narrow
        if cfg.w_bits > 4 and cfg.w_bits not in PLANE_BITS:
            continue  # 8/16-bit weights are stored as evaluated
        if not rounding_entry(cfg.effective().rounding).on_grid:
            continue  # a table method's own representation (8-bit codes): written as evaluated
        if gathers_first(layer, cfg.effective().granularity.block_size):
            continue  # packed lookup table already (qaev.quantize.lookup)
        if _nbits_eligible(layer, cfg):
            node = ed.node(layer.name)
            dq = ed.node(f"{layer.name}.w.DequantizeLinear")
            _matmulnbits(ed, layer, node, quantized_weight(quantizer.model, layer, cfg, resolved, quantizer.weights,
                                                           inputs=quantizer.inputs), accuracy=resolved.nbits_accuracy)
            ed.remove(dq)
            continue
        dq = ed.node(f"{layer.name}.w.DequantizeLinear")
        if _planes_apply(layer, cfg, quantized, inits[dq.input[0]]):
            if dq.input[0] not in planed:
                planed[dq.input[0]] = planes_tensor(ed, numpy_helper.to_array(inits[dq.input[0]]), cfg.w_bits,
                                                    name=f"{layer.name}.w")
            dq.input[0] = planed[dq.input[0]]
            continue
        if cfg.w_bits > 4:
            continue  # 6-bit beside static activations: INT8, as evaluated
        bits = _storage_bits(layer, cfg, quantized)
        for name in (dq.input[0], dq.input[2]):
            if name not in converted:
                inits[name].CopyFrom(_narrowed(inits[name], bits))
                converted.add(name)
    out = ed.finish()
    if (any(n.domain == _MS_DOMAIN for n in out.graph.node)
            and not any(o.domain == _MS_DOMAIN for o in out.opset_import)):
        out.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    if any(i.data_type == onnx.TensorProto.INT2 for i in out.graph.initializer):
        out = converted_to_opset(out, _INT2_OPSET, where="export (INT2 weights)")
    return compact_names(out) if compact else out
