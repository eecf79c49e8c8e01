"""ONNX operators as PyTorch functions, for :mod:`qaev.quantize.learned.torch_graph`.

Each entry of :data:`OPS` takes ``(attrs, inputs)`` (the node's attributes as plain Python
values; its inputs as tensors, None for an omitted optional input) and returns a tensor or
a tuple of tensors. Shape arithmetic runs on int64 tensors, as in ONNX. The operators cover
the CNNs and BERT-style encoders qaev's problems use (ONNX opsets 13-21).
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper

from qaev.errors import ModelError
from qaev.quantize.layer_inputs import _pads

try:  # optional: every entry point checks with qaev.quantize.learned._torch.require_torch first
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - exercised by the no-torch test through require_torch
    torch = F = None

__all__ = ["OPS", "torch_dtype"]


def torch_dtype(onnx_type: int):
    """The torch dtype of an ONNX ``TensorProto`` element type."""
    return getattr(torch, {"float32": "float32", "float64": "float64", "float16": "float16", "int64": "int64",
                           "int32": "int32", "int8": "int8", "uint8": "uint8", "bool": "bool",
                           "int16": "int16"}[str(np.dtype(helper.tensor_dtype_to_np_dtype(onnx_type)))])


def _ints(t) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


def _axes(attrs: dict, inputs: list, slot: int = 1) -> list[int] | None:
    """Axes from an input (newer opsets) or the ``axes`` attribute (older ones)."""
    if len(inputs) > slot and inputs[slot] is not None:
        return _ints(inputs[slot])
    return attrs.get("axes")


def _reduce(fn):
    def run(attrs, inputs):
        x, axes = inputs[0], _axes(attrs, inputs)
        keep = bool(attrs.get("keepdims", 1))
        if not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, [a % x.dim() for a in axes], keep)
    return run


def _conv(attrs, inputs):
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    kernel = list(w.shape[2:])
    nd = len(kernel)
    strides = attrs.get("strides", [1] * nd)
    dilations = attrs.get("dilations", [1] * nd)
    pads = _pads(attrs, list(x.shape[2:]), kernel, strides, dilations)
    padding = pads[:nd]
    if pads[:nd] != pads[nd:]:  # asymmetric (e.g. TF "SAME" with stride 2): pad first, a copy
        flat = []
        for i in reversed(range(nd)):
            flat += [pads[i], pads[i + nd]]
        x, padding = F.pad(x, flat), [0] * nd
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    return conv(x, w, bias, stride=strides, padding=padding, dilation=dilations, groups=int(attrs.get("group", 1)))


def _pool(kind: str):
    def run(attrs, inputs):
        x = inputs[0]
        kernel = attrs["kernel_shape"]
        nd = len(kernel)
        strides = attrs.get("strides", [1] * nd)
        pads = _pads(attrs, list(x.shape[2:]), kernel, strides, attrs.get("dilations", [1] * nd))
        if pads[:nd] != pads[nd:]:
            raise ModelError(f"{kind}: asymmetric pooling pads {pads} are not supported")
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "MaxPool":
            fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[nd]
            return fn(x, kernel, strides, pads[:nd], attrs.get("dilations", [1] * nd), ceil_mode=ceil)
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[nd]
        return fn(x, kernel, strides, pads[:nd], ceil_mode=ceil,
                  count_include_pad=bool(attrs.get("count_include_pad", 0)))
    return run


def _gemm(attrs, inputs):
    a, b = inputs[0], inputs[1]
    a = a.t() if attrs.get("transA", 0) else a
    b = b.t() if attrs.get("transB", 0) else b
    out = (a @ b) * float(attrs.get("alpha", 1.0))
    if len(inputs) > 2 and inputs[2] is not None:
        out = out + inputs[2] * float(attrs.get("beta", 1.0))
    return out


def _clip(attrs, inputs):
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    lo, hi = (None if v is None else float(v) for v in (lo, hi))
    if lo is not None and hi is not None and inputs[0].is_floating_point():
        return F.hardtanh(inputs[0], lo, hi)  # one fused kernel forward and backward (ReLU6 et al.)
    return torch.clamp(inputs[0], min=lo, max=hi)


def _reshape(attrs, inputs):
    x, shape = inputs[0], _ints(inputs[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(attrs, inputs):
    x = inputs[0]
    axis = int(attrs.get("axis", 1)) % max(x.dim(), 1) if x.dim() else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _pad(attrs, inputs):
    x, pads = inputs[0], _ints(inputs[1]) if len(inputs) > 1 else attrs["pads"]
    value = float(inputs[2]) if len(inputs) > 2 and inputs[2] is not None and inputs[2].numel() else 0.0
    axes = _axes(attrs, inputs, 3) or list(range(x.dim()))
    k = len(axes)
    full = [0] * (2 * x.dim())
    for i, a in enumerate(axes):
        full[a % x.dim()], full[a % x.dim() + x.dim()] = pads[i], pads[i + k]
    flat = []
    for a in reversed(range(x.dim())):
        flat += [full[a], full[a + x.dim()]]
    mode = attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    while flat and flat[-2:] == [0, 0]:  # torch pads only the trailing dims of non-constant modes
        flat = flat[:-2]
    return F.pad(x, flat, mode=torch_mode, value=value) if torch_mode == "constant" else F.pad(x, flat, mode=torch_mode)


def _gather(attrs, inputs):
    data, idx = inputs[0], inputs[1].long()
    axis = int(attrs.get("axis", 0)) % data.dim()
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = data.index_select(axis, idx.reshape(-1))
    return out.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))


def _slice(attrs, inputs):
    x = inputs[0]
    starts, ends = _ints(inputs[1]), _ints(inputs[2])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else list(range(len(starts)))
    steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= x.dim()
        if step > 0:  # Python's slice clamps out-of-range starts and ends as ONNX does
            x = x[(slice(None),) * axis + (slice(start, end, step),)]
        else:
            idx = range(x.shape[axis])[slice(start, end, step)]
            x = x.index_select(axis, torch.tensor(list(idx), dtype=torch.long))
    return x


def _div(attrs, inputs):
    a, b = inputs
    if not a.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _unsqueeze(attrs, inputs):
    x = inputs[0]
    axes = sorted(a % (x.dim() + len(_axes(attrs, inputs))) for a in _axes(attrs, inputs))
    for a in axes:
        x = x.unsqueeze(a)
    return x


def _squeeze(attrs, inputs):
    x, axes = inputs[0], _axes(attrs, inputs)
    if axes is None:
        return x.squeeze()
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


def _shape(attrs, inputs):
    shape = list(inputs[0].shape)
    start, end = attrs.get("start", 0), attrs.get("end", None)
    return torch.tensor(shape[start:end], dtype=torch.int64)


def _expand(attrs, inputs):
    x, shape = inputs[0], _ints(inputs[1])
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(shape)))


def _constant(attrs, inputs):
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if key in attrs:
            v = attrs[key]
            if hasattr(v, "dims"):
                from onnx import numpy_helper
                return torch.from_numpy(numpy_helper.to_array(v).copy())
            return torch.tensor(v)
    raise ModelError("Constant: no supported value attribute")


def _constant_of_shape(attrs, inputs):
    from onnx import numpy_helper
    value = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    return torch.full(_ints(inputs[0]), value.reshape(-1)[0].item(), dtype=torch.from_numpy(value).dtype)


def _layer_norm(attrs, inputs):
    x, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis = int(attrs.get("axis", -1)) % x.dim()
    return F.layer_norm(x, tuple(x.shape[axis:]), scale, bias, float(attrs.get("epsilon", 1e-5)))


def _batch_norm(attrs, inputs):
    x, scale, bias, mean, var = inputs[:5]
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(attrs.get("epsilon", 1e-5)))


def _softmax(attrs, inputs):
    return torch.softmax(inputs[0], dim=int(attrs.get("axis", -1)))


def _transpose(attrs, inputs):
    x = inputs[0]
    return x.permute(attrs.get("perm", list(reversed(range(x.dim())))))


def _variadic(fn):
    def run(attrs, inputs):
        out = inputs[0]
        for other in inputs[1:]:
            out = fn(out, other)
        return out
    return run


OPS = {
    "Conv": _conv, "MaxPool": _pool("MaxPool"), "AveragePool": _pool("AveragePool"), "Gemm": _gemm,
    "MatMul": lambda a, i: torch.matmul(i[0], i[1]), "Clip": _clip,
    "Relu": lambda a, i: torch.relu(i[0]), "Sigmoid": lambda a, i: torch.sigmoid(i[0]),
    "Tanh": lambda a, i: torch.tanh(i[0]), "Erf": lambda a, i: torch.erf(i[0]), "Exp": lambda a, i: torch.exp(i[0]),
    "Sqrt": lambda a, i: torch.sqrt(i[0]), "Neg": lambda a, i: -i[0], "Not": lambda a, i: ~i[0],
    "LeakyRelu": lambda a, i: F.leaky_relu(i[0], float(a.get("alpha", 0.01))),
    "HardSigmoid": lambda a, i: torch.clamp(i[0] * float(a.get("alpha", 0.2)) + float(a.get("beta", 0.5)), 0, 1),
    "HardSwish": lambda a, i: F.hardswish(i[0]),
    "Add": lambda a, i: i[0] + i[1], "Sub": lambda a, i: i[0] - i[1], "Mul": lambda a, i: i[0] * i[1],
    "Div": _div, "Pow": lambda a, i: torch.pow(i[0], i[1]),
    "Equal": lambda a, i: i[0] == i[1], "Less": lambda a, i: i[0] < i[1], "Greater": lambda a, i: i[0] > i[1],
    "Where": lambda a, i: torch.where(i[0], i[1], i[2]),
    "Min": _variadic(torch.minimum), "Max": _variadic(torch.maximum), "Sum": _variadic(torch.add),
    "GlobalAveragePool": lambda a, i: i[0].mean(dim=tuple(range(2, i[0].dim())), keepdim=True),
    "ReduceMean": _reduce(lambda x, ax, k: x.mean(dim=ax, keepdim=k)),
    "ReduceSum": _reduce(lambda x, ax, k: x.sum(dim=ax, keepdim=k)),
    "ReduceMax": _reduce(lambda x, ax, k: x.amax(dim=ax, keepdim=k)),
    "ReduceL2": _reduce(lambda x, ax, k: torch.sqrt((x * x).sum(dim=ax, keepdim=k))),
    "Softmax": _softmax, "LayerNormalization": _layer_norm, "BatchNormalization": _batch_norm,
    "Flatten": _flatten, "Reshape": _reshape, "Transpose": _transpose, "Pad": _pad,
    "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Gather": _gather, "Slice": _slice,
    "Concat": lambda a, i: torch.cat(list(i), dim=int(a["axis"])), "Shape": _shape, "Expand": _expand,
    "Cast": lambda a, i: i[0].to(torch_dtype(int(a["to"]))), "Identity": lambda a, i: i[0],
    "Dropout": lambda a, i: i[0], "Constant": _constant, "ConstantOfShape": _constant_of_shape,
    "Range": lambda a, i: torch.arange(i[0].item(), i[1].item(), i[2].item(), dtype=i[0].dtype),
}
