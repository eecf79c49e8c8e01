"""The file a user ships: the evaluation graph with sub-byte weights stored natively.

- Weights of at most 4 bits are stored as ONNX ``INT4`` (opset 21), so the file size
  reflects the bits. 2- and 3-bit grids are stored in INT4 too: ONNX Runtime 1.32 returned
  wrong values for ``INT2``/``UINT2`` DequantizeLinear inputs in our check, so INT2 is not
  written.
- Weight-only, block-wise MatMuls with at most 4-bit weights become ONNX Runtime's
  ``com.microsoft.MatMulNBits`` (4-bit), the kernel it runs fastest.

Both forms dequantize to exactly the values of the evaluation graph.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import onnx
from onnx import helper, numpy_helper

from qaev.config import ActMode, QuantConfig
from qaev.layers import LayerInfo
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.qdq import build_qdq, quantized_weight
from qaev.quantize.quantizer import Quantizer
from qaev.quantize.weights import QuantizedWeight

__all__ = ["export_model"]

_MS_DOMAIN = "com.microsoft"


def _as_int4(tensor: onnx.TensorProto) -> onnx.TensorProto:
    values = numpy_helper.to_array(tensor)
    return numpy_helper.from_array(values.astype(np.int8).astype(ml_dtypes.int4), tensor.name)


def _pack4(values: np.ndarray) -> np.ndarray:
    """Pack unsigned 4-bit values along the last axis, low nibble first."""
    if values.shape[-1] % 2:
        values = np.concatenate([values, np.zeros((*values.shape[:-1], 1), values.dtype)], axis=-1)
    v = values.astype(np.uint8)
    return (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)


def _matmulnbits(ed: GraphEditor, layer: LayerInfo, node: onnx.NodeProto, qw: QuantizedWeight) -> None:
    k, n = qw.q.shape
    block = qw.block_size
    n_blocks = math.ceil(k / block)
    pad = n_blocks * block - k
    u = qw.q.astype(np.int16) + 8  # signed 4-bit grid -> unsigned nibble
    zp = qw.zero_point.astype(np.int16) + 8  # [n_blocks, N]
    if pad:
        u = np.concatenate([u, np.repeat(zp[-1:], pad, axis=0)], axis=0)  # padding dequantizes to 0
    blocks = u.T.reshape(n, n_blocks, block)  # [N, n_blocks, block]
    packed = _pack4(blocks)  # [N, n_blocks, block/2]
    inputs = [node.input[0], ed.add_init(f"{layer.name}.B", packed),
              ed.add_init(f"{layer.name}.scales", np.ascontiguousarray(qw.scale.T).astype(np.float32))]
    if np.any(qw.zero_point != 0):
        inputs.append(ed.add_init(f"{layer.name}.zero_points", _pack4(zp.T)))
    ed.add_node("MatMulNBits", inputs, [node.output[0]], name=f"{layer.name}.MatMulNBits", domain=_MS_DOMAIN,
                K=k, N=n, bits=4, block_size=block)
    ed.remove(node)


def _nbits_eligible(layer: LayerInfo, cfg) -> bool:
    return (layer.op_type == "MatMul" and len(layer.weight_shape) == 2 and cfg.act is ActMode.FLOAT
            and cfg.w_bits is not None and cfg.w_bits <= 4 and cfg.granularity.block_size is not None)


def export_model(quantizer: Quantizer, config: QuantConfig) -> onnx.ModelProto:
    """The deployable model of ``config``.

    Args:
        quantizer: the engine of the float model (statistics needed only when the config
            carries no ranges).
        config: the config to export.

    Returns:
        A model whose outputs equal the evaluation graph's, with native INT4 weights and
        MatMulNBits where they apply.
    """
    resolved = quantizer.resolve(config)
    proto = build_qdq(quantizer.model, quantizer.layers, resolved, cache=quantizer.weights, inputs=quantizer.inputs)
    ed = GraphEditor(proto)
    inits = {i.name: i for i in ed.model.graph.initializer}
    converted = set()
    for layer in quantizer.layers:
        cfg = resolved.layer(layer.name)
        if cfg is None or cfg.w_bits is None or cfg.w_bits > 4 or cfg.act is ActMode.DYNAMIC:
            continue  # dynamic layers feed MatMulInteger int8 directly: no DequantizeLinear to narrow
        if _nbits_eligible(layer, cfg):
            node = ed.node(layer.name)
            dq = ed.node(f"{layer.name}.w.DequantizeLinear")
            _matmulnbits(ed, layer, node, quantized_weight(quantizer.model, layer, cfg, resolved, quantizer.weights,
                                                                  inputs=quantizer.inputs))
            ed.remove(dq)
            continue
        dq = ed.node(f"{layer.name}.w.DequantizeLinear")
        for name in (dq.input[0], dq.input[2]):
            if name not in converted:
                inits[name].CopyFrom(_as_int4(inits[name]))
                converted.add(name)
    out = ed.finish()
    if any(n.domain == _MS_DOMAIN for n in out.graph.node) and not any(o.domain == _MS_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    return out
