"""Layer-wise learned rounding (AdaRound): never worse than GPTQ per row, deterministic,
one-line error without PyTorch."""
import sys

import numpy as np
import pytest

from qaev.config import Granularity, ScaleRule
from qaev.errors import ConfigError
from qaev.model.layers import LayerInfo
from qaev.quantize.learned.adaround import AdaRoundOptions, adaround
from qaev.quantize.learned.torch_graph import run_onnx
from qaev.quantize.rounding.gptq import gptq_round
from qaev.quantize.rounding.groups import reconstruction_error, to_groups
from qaev.quantize.weights import quantize_weight
from tests.models import conv_mlp, images

_SHAPES = {"conv": ((6, 4, 3, 3), 1, "Conv", (0, None)), "depthwise": ((5, 1, 3, 3), 5, "Conv", (0, None)),
           "gemm": ((7, 40), 1, "Gemm", (0, 1)), "matmul": ((40, 7), 1, "MatMul", (1, 0))}


def _layer_case(kind: str, rng):
    """(weight, LayerInfo, Hessian) of a small layer of ``kind`` with correlated inputs."""
    shape, groups, op, (channel, reduce) = _SHAPES[kind]
    layer = LayerInfo(kind, op, "w", shape, channel, reduce, ("x",), "y", None, int(np.prod(shape)),
                      depthwise=kind == "depthwise")
    n = int(np.prod(shape)) // shape[0] if op == "Conv" else shape[reduce]
    n = n if groups == 1 else 9
    mix = rng.normal(size=(groups, n, n)) * 0.5 + np.eye(n)
    x = rng.normal(size=(groups, 300, n)) @ mix
    w = rng.normal(size=shape).astype(np.float32) * 0.1
    return w, layer, np.einsum("grn,grm->gnm", x, x) / 300


def _nearest(w, layer, bits, granularity, symmetric):
    return quantize_weight(w, bits=bits, granularity=granularity, symmetric=symmetric, scale_rule=ScaleRule.FLOAT,
                           channel_axis=layer.channel_axis, reduce_axis=layer.reduce_axis)


@pytest.mark.parametrize("kind,bits,granularity,symmetric", [
    ("conv", 4, Granularity.PER_CHANNEL, True), ("depthwise", 4, Granularity.PER_CHANNEL, False),
    ("conv", 3, Granularity.PER_TENSOR, True), ("gemm", 2, Granularity.BLOCK32, False),
    ("matmul", 8, Granularity.PER_CHANNEL, True), ("matmul", 4, Granularity.BLOCK32, True),
])
def test_adaround_reconstructs_every_row_no_worse_than_gptq_or_nearest(kind, bits, granularity, symmetric):
    w, layer, hess = _layer_case(kind, np.random.default_rng(bits))
    nearest = _nearest(w, layer, bits, granularity, symmetric)
    got, report = adaround(w, nearest, hess, layer=layer, symmetric=symmetric, options=AdaRoundOptions(iters=300))
    gptq = gptq_round(w, nearest, hess, layer=layer, symmetric=symmetric)

    def err(q):
        return reconstruction_error(to_groups(w.astype(np.float64) - q.dequantize(), layer, hess.shape[0]), hess)

    assert np.all(err(got) <= err(gptq) + 1e-9) and np.all(err(got) <= err(nearest) + 1e-9)
    assert report.final <= min(report.gptq, report.nearest) + 1e-9 and report.rows == err(got).size
    np.testing.assert_array_equal(got.scale, nearest.scale)
    np.testing.assert_array_equal(got.zero_point, nearest.zero_point)
    lo, hi = (-(2 ** (bits - 1) - 1) if symmetric else -(2 ** (bits - 1))), 2 ** (bits - 1) - 1
    assert got.q.min() >= lo and got.q.max() <= hi and got.q.dtype == nearest.q.dtype


def test_adaround_learns_better_than_nearest_and_is_deterministic():
    w, layer, hess = _layer_case("conv", np.random.default_rng(0))
    nearest = _nearest(w, layer, 3, Granularity.PER_CHANNEL, True)
    a, report = adaround(w, nearest, hess, layer=layer, symmetric=True, options=AdaRoundOptions(iters=400))
    b, _ = adaround(w, nearest, hess, layer=layer, symmetric=True, options=AdaRoundOptions(iters=400))
    assert a.q.tobytes() == b.q.tobytes()
    assert report.learned < report.nearest and report.rows_learned > 0


def test_without_torch_the_calls_raise_a_config_error_naming_the_extra(monkeypatch):
    w, layer, hess = _layer_case("conv", np.random.default_rng(0))
    nearest = _nearest(w, layer, 4, Granularity.PER_CHANNEL, True)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ConfigError, match=r"pip install 'qaev\[torch\]'"):
        adaround(w, nearest, hess, layer=layer, symmetric=True)
    with pytest.raises(ConfigError, match=r"qaev\[torch\]"):
        run_onnx(conv_mlp(), {"x": images(2)})
