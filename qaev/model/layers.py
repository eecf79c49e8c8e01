"""Quantizable layers of a normalised float model, with shapes, MACs and parameter counts."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import onnx

from qaev.errors import ModelError
from qaev.model.graph import FloatModel
from qaev.model.subgraphs import subgraphs

__all__ = ["LayerInfo", "find_layers", "infer_shapes", "FUSED_ACTIVATIONS"]

#: Activations the runtime fuses into the preceding Conv/Gemm/MatMul: quantize after them.
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu"})
_FLOAT = onnx.TensorProto.FLOAT


@dataclass(frozen=True)
class LayerInfo:
    """One quantizable layer.

    Attributes:
        name: node name (what configs refer to).
        op_type: ``Conv``, ``ConvTranspose``, ``Gemm``, ``MatMul``, ``Gather`` or
            ``MatMulAct`` (MatMul of two activations: activation-only quantization).
        weight: initializer name of the weight, or None for ``MatMulAct``.
        weight_shape: shape of the weight (empty for ``MatMulAct``).
        channel_axis: axis of the weight holding output channels (per-channel scales).
        reduce_axis: axis of the weight summed over (block-wise scales), or None.
        act_inputs: activation tensors quantized when activations are.
        output: the tensor after any fused activation (where an output QDQ goes).
        macs: multiply-accumulates per sample, or None where shapes are unknown.
        params: weight elements.
        depthwise: a grouped Conv with one input channel per group.
    """

    name: str
    op_type: str
    weight: str | None
    weight_shape: tuple[int, ...]
    channel_axis: int
    reduce_axis: int | None
    act_inputs: tuple[str, ...]
    output: str
    macs: int | None
    params: int
    depthwise: bool = False

    @property
    def has_weight(self) -> bool:
        """False for activation-only layers."""
        return self.weight is not None

    @property
    def supports_blocks(self) -> bool:
        """Whether block-wise weight scales apply (MatMul/Gemm/Gather weights)."""
        return self.op_type in ("Gemm", "MatMul", "Gather")

    @property
    def supports_activations(self) -> bool:
        """Whether activation quantization applies (not for embedding lookups)."""
        return self.op_type != "Gather"


def infer_shapes(model: FloatModel, input_shapes: Mapping[str, Sequence[int]] | None = None) -> dict[str, tuple]:
    """Shape-infer every tensor with batch 1 and the given dims for dynamic inputs.

    Args:
        model: the float model.
        input_shapes: full shapes (batch included) of a real batch; dims of these
            replace the model's symbolic ones, the batch dim is set to 1.

    Returns:
        tensor name -> tuple of dims (ints, or strings for unresolved dims).
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    inits = {i.name for i in proto.graph.initializer}
    given = dict(input_shapes or {})
    for value in proto.graph.input:
        if value.name in inits:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = list(given.get(value.name, []))
        for axis, dim in enumerate(dims):
            if axis == 0:
                dim.ClearField("dim_param")
                dim.dim_value = 1
            elif axis < len(shape) and int(shape[axis]) > 0:
                dim.ClearField("dim_param")
                dim.dim_value = int(shape[axis])
    del proto.graph.value_info[:]  # stale value_info would pin the old batch size
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as exc:  # inference failure leaves MACs unknown, not the run
        warnings.warn(f"shape inference failed: {exc}", stacklevel=2)
        inferred = proto
    shapes: dict[str, tuple] = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        t = value.type.tensor_type
        if t.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                       for d in t.shape.dim)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _known(shape) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape)


def _prod(values) -> int:
    return int(np.prod(values, dtype=np.int64)) if len(values) else 1


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _fused_output(node: onnx.NodeProto, consumers: dict[str, list], outputs: set[str]) -> str:
    out = node.output[0]
    users = consumers.get(out, [])
    if len(users) == 1 and users[0].op_type in FUSED_ACTIVATIONS and out not in outputs:
        return users[0].output[0]
    return out


def _per_sample_macs(out_shape, reduce: int) -> int | None:
    if not _known(out_shape):
        return None
    return _prod(out_shape[1:]) * reduce if len(out_shape) > 1 else _prod(out_shape) * reduce


def _layer(node, model: FloatModel, shapes, consumers, outputs, float_tensors) -> LayerInfo | None:
    inits = model.initializers
    op = node.op_type
    out = node.output[0]
    fused = _fused_output(node, consumers, outputs)
    if op in ("Conv", "ConvTranspose"):
        if len(node.input) < 2 or node.input[1] not in inits:
            return None
        w = tuple(inits[node.input[1]].dims)
        group = int(_attr(node, "group", 1))
        kernel = _prod(w[2:])
        if op == "Conv":
            reduce = w[1] * kernel
            macs = _per_sample_macs(shapes.get(out), reduce)
            channel_axis = 0
        else:
            in_shape = shapes.get(node.input[0])
            macs = _prod(in_shape[1:]) * w[1] * kernel if _known(in_shape) else None
            channel_axis = 1
        return LayerInfo(node.name, op, node.input[1], w, channel_axis, None, (node.input[0],), fused,
                         macs, _prod(w), depthwise=(op == "Conv" and group > 1 and w[1] == 1))
    if op == "Gemm":
        if node.input[1] not in inits or int(_attr(node, "transA", 0)):
            return None
        w = tuple(inits[node.input[1]].dims)
        trans_b = int(_attr(node, "transB", 0))
        k = w[1] if trans_b else w[0]
        return LayerInfo(node.name, op, node.input[1], w, 0 if trans_b else 1, 1 if trans_b else 0,
                         (node.input[0],), fused, _per_sample_macs(shapes.get(out), k), _prod(w))
    if op == "MatMul":
        a, b = node.input[0], node.input[1]
        if b in inits:
            w = tuple(inits[b].dims)
            if len(w) < 2:
                return None
            return LayerInfo(node.name, op, b, w, len(w) - 1, len(w) - 2, (a,), fused,
                             _per_sample_macs(shapes.get(out), w[-2]), _prod(w))
        if a in inits or a not in float_tensors or b not in float_tensors:
            return None
        a_shape = shapes.get(a)
        k = a_shape[-1] if a_shape and isinstance(a_shape[-1], int) and a_shape[-1] > 0 else None
        macs = _per_sample_macs(shapes.get(out), k) if k else None
        return LayerInfo(node.name, "MatMulAct", None, (), 0, None, (a, b), fused, macs, 0)
    if op == "Gather":
        table = node.input[0]
        if table not in inits or int(_attr(node, "axis", 0)) != 0:
            return None
        t = inits[table]
        if t.data_type != _FLOAT or len(t.dims) != 2:
            return None
        w = tuple(t.dims)
        return LayerInfo(node.name, op, table, w, 0, 1, (), out, 0, _prod(w))
    return None


def _elem_types(model: FloatModel) -> dict[str, int]:
    try:
        inferred = onnx.shape_inference.infer_shapes(model.proto)
    except Exception:
        inferred = model.proto
    types = {}
    for value in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    return types


def find_layers(
    model: FloatModel,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> list[LayerInfo]:
    """List the quantizable layers of ``model`` in graph order.

    Args:
        model: the normalised float model.
        input_shapes: shapes of a real batch, to resolve dynamic dims for MACs.

    Raises:
        ModelError: the model has no quantizable layer.
    """
    shapes = infer_shapes(model, input_shapes)
    consumers: dict[str, list] = {}
    for node in model.proto.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.proto.graph.output}
    float_tensors = {name for name, elem in _elem_types(model).items() if elem == _FLOAT}
    producer = {out: node for node in model.proto.graph.node for out in node.output}
    layers = []
    for node in model.proto.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        layer = _layer(node, model, shapes, consumers, outputs, float_tensors)
        if layer is None:
            continue
        custom = [producer[t].op_type for t in layer.act_inputs if t in producer
                  and producer[t].domain not in ("", "ai.onnx")]
        custom += [c.op_type for c in consumers.get(node.output[0], []) if c.domain not in ("", "ai.onnx")]
        if custom:
            warnings.warn(f"layer {layer.name!r} skipped: it is next to custom-domain op {custom[0]!r}", stacklevel=2)
            continue
        layers.append(layer)
    inside = _layers_in_bodies(model.proto.graph)
    where = model.path or "<model>"
    if not layers and inside:
        raise ModelError(f"{where}: no quantizable layer outside control flow: {_describe_bodies(inside)}, "
                         "which qaev does not quantize (it quantizes the main graph only)")
    if not layers:
        raise ModelError(f"{where}: no quantizable layer (Conv, ConvTranspose, Gemm, MatMul, Gather) found")
    if inside:
        warnings.warn(f"{_describe_bodies(inside)}; they stay float (qaev quantizes the main graph only)",
                      stacklevel=2)
    return layers


_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Gather")


def _layers_in_bodies(graph: onnx.GraphProto, parent: str | None = None) -> list[tuple[str, str]]:
    """(op type, outermost control-flow node) of every would-be layer inside an If/Loop/Scan body."""
    found = []
    for node in graph.node:
        if parent is not None and node.op_type in _LAYER_OPS:
            found.append((node.op_type, parent))
        for body in subgraphs(node):
            found += _layers_in_bodies(body, parent or f"{node.op_type} {node.name!r}")
    return found


def _describe_bodies(inside: list[tuple[str, str]]) -> str:
    ops = sorted({op for op, _ in inside})
    parents = sorted({p for _, p in inside})
    return (f"{len(inside)} layer(s) ({', '.join(ops)}) sit inside control flow, in the bodies of "
            f"{', '.join(parents[:3])}{' ...' if len(parents) > 3 else ''}")
