"""Load and normalise an ONNX model so every later step sees one canonical float graph.

Normalisation: weights held in ``Constant`` nodes become initializers, unnamed nodes get
stable names, ``BatchNormalization`` after a ``Conv`` is folded into it, and the opset is
raised to at least 21 (block-wise and sub-byte quantization need it) where the converter
can. Models that are already quantized are refused.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from qaev.errors import DataError, ModelError
from qaev.model.external import all_tensors, inline_external_data
from qaev.model.subgraphs import outer_reads

__all__ = ["FloatModel", "load_model", "read_model_file", "check_inputs", "converted_to_opset", "QUANTIZED_OPS",
           "TARGET_OPSET"]

#: Opset the evaluation graphs are built at (block-wise DequantizeLinear, INT4 types).
TARGET_OPSET = 21
_MIN_OPSET = 13  # per-axis QuantizeLinear

#: Ops whose presence means the model was quantized already.
QUANTIZED_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
    "QLinearMatMul", "ConvInteger", "MatMulInteger", "MatMulNBits", "QGemm", "QLinearAdd",
    "QLinearMul", "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool",
    "QLinearSigmoid", "QLinearLeakyRelu", "DynamicQuantizeMatMul", "QAttention",
    "GatherBlockQuantized", "MatMulIntegerToFloat", "DequantizeBFP", "QuantizeBFP",
})
_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class FloatModel:
    """A normalised float model.

    Attributes:
        proto: the normalised graph (do not mutate; copy first).
        path: where it was read from, or None for an in-memory model.
        sha256: hash of the original file bytes (configs are bound to it).
        opset: the default-domain opset of ``proto``.
    """

    proto: onnx.ModelProto
    path: Path | None
    sha256: str
    opset: int

    @property
    def inputs(self) -> dict[str, onnx.ValueInfoProto]:
        """Graph inputs that are not initializers, by name."""
        inits = {i.name for i in self.proto.graph.initializer}
        return {v.name: v for v in self.proto.graph.input if v.name not in inits}

    @cached_property
    def initializers(self) -> dict[str, onnx.TensorProto]:
        """Initializers by name (made once, as ``proto`` is never changed; do not modify)."""
        return {i.name: i for i in self.proto.graph.initializer}

    def weight(self, name: str) -> np.ndarray:
        """An initializer as a numpy array."""
        return numpy_helper.to_array(self.initializers[name])

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model's inputs fix (their first dim), or None when dynamic."""
        for value in self.inputs.values():
            dims = value.type.tensor_type.shape.dim
            if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
                return int(dims[0].dim_value)
        return None

    def check_feed(self, feed) -> None:
        """Check a batch against the model's inputs: names, rank, fixed dims and dtype.

        Raises:
            DataError: naming the input and what differs.
        """
        expected = {}
        for name, value in self.inputs.items():
            tt = value.type.tensor_type
            dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
            dims = ([d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
                    if tt.HasField("shape") else None)
            expected[name] = (dtype, dims)
        check_inputs(feed, expected)


def check_inputs(feed, expected) -> None:
    """Check feed names, dtypes and shapes against ``expected``: input name -> (numpy dtype
    or None, list of dims (int, or None/str for a free dim) or None when unknown).

    Raises:
        DataError: naming the input and what differs.
    """
    if set(feed) != set(expected):
        raise DataError(f"data inputs {sorted(feed)} do not match the model's inputs {sorted(expected)}")
    for name, (want, dims) in expected.items():
        arr = np.asarray(feed[name])
        if want is not None and arr.dtype != np.dtype(want):
            raise DataError(f"input {name!r}: data dtype {arr.dtype} does not match the model's {np.dtype(want)}")
        fixed = None if dims is None else [d if isinstance(d, int) and d > 0 else None for d in dims]
        if fixed is not None and (len(fixed) != arr.ndim or any(d and d != s for d, s in zip(fixed, arr.shape))):
            shown = [d if d else "?" for d in fixed]
            raise DataError(f"input {name!r}: data shape {list(arr.shape)} does not match the model's {shown}")


def _describe(path: Path | None) -> str:
    return str(path) if path is not None else "<model>"


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    if not data:
        raise ModelError(f"{where}: file is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf raises DecodeError or RuntimeWarning-ish errors
        raise ModelError(f"{where}: not a valid ONNX model (protobuf parse failed; truncated or wrong file?)") from None
    if not model.graph.node:
        raise ModelError(f"{where}: not a valid ONNX model (no graph nodes)")
    return model


def _default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return 0


def _refuse_quantized(model: onnx.ModelProto, where: str) -> None:
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            raise ModelError(
                f"{where}: model is already quantized (found {node.op_type} node {node.name!r}); "
                "give qaev the float model"
            )
    low_types = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT4, onnx.TensorProto.UINT4}
    for init in model.graph.initializer:
        if init.data_type in low_types and init.dims and int(np.prod(init.dims)) > 16:
            raise ModelError(
                f"{where}: model is already quantized (8-bit initializer {init.name!r}); give qaev the float model"
            )


_HALF = {onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.BFLOAT16: "bfloat16"}


def _refuse_half(model: onnx.ModelProto, where: str) -> None:
    """Refuse models that compute in float16 or bfloat16 (qaev's graphs are float32)."""
    graph = model.graph
    found = next((f"{kind} {v.name!r}" for kind, values in (("input", graph.input), ("output", graph.output))
                  for v in values if v.type.tensor_type.elem_type in _HALF), None)
    found = found or next((f"weight {t.name!r}" for t in all_tensors(model)
                           if t.data_type in _HALF and int(np.prod(t.dims)) > 1), None)
    found = found or next((f"Cast node {n.name!r}" for n in graph.node if n.op_type == "Cast"
                           and any(a.name == "to" and a.i in _HALF for a in n.attribute)), None)
    if found:
        raise ModelError(f"{where}: model computes in half precision (float16 or bfloat16 {found}); qaev "
                         "quantizes float32 models: give it the float32 model")


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    keep = []
    for node in graph.node:
        attr = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and "value" in attr and len(node.output) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr["value"].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def _name_nodes(model: onnx.ModelProto) -> None:
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)


def _fold_batchnorm(model: onnx.ModelProto) -> None:
    """Fold ``Conv -> BatchNormalization`` pairs (inference mode) into the Conv."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in (*node.input, *outer_reads(node)):
            consumers[name] = consumers.get(name, 0) + 1
    producer = {out: node for node in graph.node for out in node.output}
    outputs = {o.name for o in graph.output}
    removed = set()
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        conv = producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or consumers.get(conv.output[0]) != 1 or conv.output[0] in outputs:
            continue
        names = list(bn.input[1:5]) + list(conv.input[1:2])
        if not all(n in inits for n in names):
            continue
        scale, bias, mean, var = (numpy_helper.to_array(inits[n]).astype(np.float64) for n in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        weight = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        old_bias = (
            numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
            if len(conv.input) > 2 and conv.input[2] in inits else np.zeros(weight.shape[0])
        )
        factor = scale / np.sqrt(var + eps)
        new_w = (weight * factor.reshape(-1, *([1] * (weight.ndim - 1)))).astype(np.float32)
        new_b = ((old_bias - mean) * factor + bias).astype(np.float32)
        w_name, b_name = f"{conv.name}.folded_weight", f"{conv.name}.folded_bias"
        graph.initializer.extend([numpy_helper.from_array(new_w, w_name), numpy_helper.from_array(new_b, b_name)])
        del conv.input[1:]
        conv.input.extend([w_name, b_name])
        conv.output[0] = bn.output[0]
        removed.add(id(bn))
    if removed:
        keep = [n for n in graph.node if id(n) not in removed]
        del graph.node[:]
        graph.node.extend(keep)
        _drop_unused_initializers(model)


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    graph = model.graph
    used = {name for node in graph.node for name in (*node.input, *outer_reads(node))} | {o.name for o in graph.output}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    inputs = [v for v in graph.input if v.name in used or v.name not in {i.name for i in keep}]
    if len(inputs) != len(graph.input):
        del graph.input[:]
        graph.input.extend(inputs)


def converted_to_opset(model: onnx.ModelProto, opset: int, *, where: str) -> onnx.ModelProto:
    """``model`` at default-domain ``opset`` or above: unchanged when already there, else
    converted by ONNX's version converter.

    Raises:
        ModelError: the converter failed (the message starts with ``where``).
    """
    current = _default_opset(model)
    if current >= opset:
        return model
    try:
        return version_converter.convert_version(model, opset)
    except Exception as exc:
        raise ModelError(f"{where}: opset {current} could not be converted to {opset} ({exc})") from None


def _raise_opset(model: onnx.ModelProto, where: str) -> onnx.ModelProto:
    """At :data:`TARGET_OPSET` and checked when possible; a model already at a usable opset
    is kept as it is when conversion fails."""
    opset = _default_opset(model)
    try:
        converted = converted_to_opset(model, TARGET_OPSET, where=where)
        if converted is not model:
            onnx.checker.check_model(converted)
        return converted
    except Exception as exc:
        if opset >= _MIN_OPSET:
            return model
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"{where}: opset {opset} could not be converted to {TARGET_OPSET} ({exc})") from None


def _file_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise ModelError(f"{path}: is a directory, not a model file")
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    if path.stat().st_size > _MAX_BYTES:
        raise ModelError(f"{path}: models over 2 GiB are not supported")
    return path.read_bytes()


def read_model_file(path: str | os.PathLike) -> onnx.ModelProto:
    """An ONNX file as it is (no normalisation: a float or a quantized model), its external
    data checked against its folder and read in (:mod:`qaev.model.external`).

    Raises:
        ModelError: missing, not ONNX, or external data outside the model's folder.
    """
    path = Path(path)
    model = _parse(_file_bytes(path), str(path))
    inline_external_data(model, path.parent, str(path))
    return model


def load_model(source: str | os.PathLike | bytes | onnx.ModelProto) -> FloatModel:
    """Read and normalise a float ONNX model.

    Args:
        source: a path, the serialised bytes, or a ``ModelProto``.

    Returns:
        The normalised :class:`FloatModel`.

    Raises:
        ModelError: the file is missing, not ONNX, truncated, already quantized, or its
            external data points outside the model's folder.

    Example:
        >>> from qaev.data import digits_model_path
        >>> load_model(digits_model_path()).opset >= 13
        True
    """
    path = None
    if isinstance(source, onnx.ModelProto):
        data = source.SerializeToString()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        path = Path(source)
        data = _file_bytes(path)
    where = _describe(path)
    model = _parse(data, where)
    inline_external_data(model, path.parent if path else None, where)
    if _default_opset(model) < 7:
        raise ModelError(f"{where}: model declares no usable default-domain opset")
    _refuse_quantized(model, where)
    _refuse_half(model, where)
    _constants_to_initializers(model)
    _name_nodes(model)
    _fold_batchnorm(model)
    model = _raise_opset(model, where)
    return FloatModel(proto=model, path=path, sha256=hashlib.sha256(data).hexdigest(), opset=_default_opset(model))
