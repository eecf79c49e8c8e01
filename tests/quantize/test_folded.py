"""Weight-only layers run as float layers: dequantized when the session loads, exactly as
evaluated, with the file still holding the bits."""
import numpy as np
import onnx
import pytest

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig, Rounding
from qaev.data import ArrayDataset
from qaev.model.graph import load_model
from qaev.model.session import make_session, run_batches
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.plan import activation_plan
from tests.models import attention_like, conv_mlp, images

_T = onnx.TensorProto


pytestmark = pytest.mark.usefixtures("own_cache")  # codebooks and learned results stay out of the user's cache


@pytest.fixture(scope="module")
def convs():
    return Quantizer.calibrated(load_model(conv_mlp()), ArrayDataset(inputs={"x": images(64)}, name="rand"),
                                persist=False)


@pytest.fixture(scope="module")
def lookups():
    ids = np.random.default_rng(0).integers(0, 50, (16, 6)).astype(np.int64)
    return Quantizer.calibrated(load_model(attention_like()), ArrayDataset(inputs={"ids": ids}, name="ids"),
                                persist=False), ids


def _optimized(model: onnx.ModelProto, path) -> onnx.ModelProto:
    """The graph ONNX Runtime runs after the session has loaded ``model``."""
    make_session(model, optimized_path=str(path))
    return onnx.load(str(path))


def _weight_dequantizations(graph: onnx.GraphProto) -> list[str]:
    """Nodes that dequantize a constant weight on every run: DequantizeLinear or
    MatMulNBits reading an initializer, or any node computing from constants only (the
    folded form left unfolded)."""
    constants = {i.name for i in graph.initializer}
    return [n.op_type for n in graph.node
            if (n.op_type in ("DequantizeLinear", "MatMulNBits") and n.input[0] in constants)
            or all(name in constants for name in n.input if name)]


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("granularity", [Granularity.PER_TENSOR, Granularity.PER_CHANNEL, Granularity.BLOCK32,
                                         Granularity.BLOCK64])
@pytest.mark.parametrize("symmetric", [True, False])
def test_conv_matmul_gemm_weight_only_run_folded_and_exactly_as_evaluated(convs, tmp_path, bits, granularity,
                                                                           symmetric):
    cfg = uniform_config(convs.layers, LayerConfig(w_bits=bits, act=ActMode.FLOAT, granularity=granularity,
                                                   symmetric=symmetric))  # block 64: 288 rows, the last block cut
    built, exported = convs.build(cfg), export_model(convs, cfg)
    x = [{"x": images(16, seed=5)}]
    np.testing.assert_array_equal(run_batches(make_session(exported), x), run_batches(make_session(built), x))
    for name, model in (("built", built), ("exported", exported)):
        optimized = _optimized(model, tmp_path / f"{name}.onnx")
        assert not _weight_dequantizations(optimized.graph), name
        assert {n.op_type for n in optimized.graph.node} <= {"Conv", "Relu", "Flatten", "MatMul", "Add", "Gemm",
                                                             "FusedConv", "FusedGemm", "FusedMatMul"}


_PACKED = {2: lambda n: -(-n // 4), 3: lambda n: 3 * -(-n // 8), 4: lambda n: -(-n // 2),
           6: lambda n: 6 * -(-n // 8), 8: lambda n: n}  # bytes of n weights: INT2, planes, INT4, planes, int8


@pytest.mark.parametrize("bits", sorted(_PACKED))
def test_the_file_holds_the_bits_not_float_weights(convs, bits):
    cfg = uniform_config(convs.layers, LayerConfig(w_bits=bits, act=ActMode.FLOAT, symmetric=False))
    exported = export_model(convs, cfg)
    weighted = [layer for layer in convs.layers if layer.has_weight]
    shapes = {tuple(layer.weight_shape) for layer in weighted}
    assert not [i.name for i in exported.graph.initializer
                if i.data_type == _T.FLOAT and tuple(i.dims) in shapes]  # no weight stored in float
    stored = sum(len(i.raw_data) for i in exported.graph.initializer if i.name.endswith((".w.q", ".w.planes")))
    assert stored == sum(_PACKED[bits](layer.params) for layer in weighted)


@pytest.mark.parametrize("table", [
    LayerConfig(w_bits=2, act=ActMode.FLOAT, rounding=Rounding.CODEBOOK),
    LayerConfig(w_bits=2, act=ActMode.FLOAT, granularity=Granularity.BLOCK32, symmetric=False),
    LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.BLOCK128),  # rows of 64: the whole table form
    LayerConfig(w_bits=3, act=ActMode.FLOAT),
    LayerConfig(w_bits=6, act=ActMode.FLOAT, symmetric=False),
])
def test_lookups_beside_folded_matmuls_export_exactly(lookups, tmp_path, table):
    q, ids = lookups
    cfg = QuantConfig(layers={"embed": table, "proj": LayerConfig(w_bits=3, act=ActMode.FLOAT, symmetric=False)})
    built, exported = q.build(cfg), export_model(q, cfg)
    feed = [{"ids": ids[:4]}]
    np.testing.assert_array_equal(run_batches(make_session(exported), feed), run_batches(make_session(built), feed))
    assert not _weight_dequantizations(_optimized(exported, tmp_path / "exported.onnx").graph)


def test_a_weight_only_matmul_beside_static_activations_keeps_its_dequantize_linear(lookups):
    q, ids = lookups
    cfg = QuantConfig(layers={"proj": LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.BLOCK32),
                              "scores": LayerConfig(w_bits=None)})  # scores quantizes the tensor proj writes
    proj = next(layer for layer in q.layers if layer.name == "proj")
    assert not activation_plan(q.resolve(cfg), q.layers).isolated(proj)
    built, exported = q.build(cfg), export_model(q, cfg)
    assert "proj.w.DequantizeLinear" in {n.name for n in built.graph.node}
    assert "MatMulNBits" in {n.op_type for n in exported.graph.node}  # the runtime's own fusion of the group
    feed = [{"ids": ids[:4]}]
    np.testing.assert_allclose(run_batches(make_session(exported), feed), run_batches(make_session(built), feed),
                               rtol=1e-5, atol=1e-5)
