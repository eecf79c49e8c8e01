import numpy as np
import onnx
import onnxruntime as ort
import pytest

from qaev.config import ActMode, Granularity, LayerConfig
from qaev.data import ArrayDataset
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.bitplanes import pack_planes, unpack_planes
from qaev.model.session import make_session, run_batches
from tests.models import conv_mlp, images


@pytest.fixture(scope="module")
def quantizer():
    return Quantizer.calibrated(load_model(conv_mlp()), ArrayDataset(inputs={"x": images(64)}, name="rand"),
                                persist=False)


@pytest.mark.parametrize("bits", [3, 6])
@pytest.mark.parametrize("shape", [(5, 7), (16, 3, 3, 3), (1,)])
def test_planes_hold_every_value_in_bits_per_weight(bits, shape):
    rng = np.random.default_rng(bits)
    q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), shape).astype(np.int8)
    planes = pack_planes(q, bits)
    assert planes.dtype == np.uint8 and planes.shape == (bits, -(-q.size // 8))
    np.testing.assert_array_equal(unpack_planes(planes, bits, shape), q)


def _planes(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return [i for i in model.graph.initializer if i.name.endswith(".planes")]


@pytest.mark.parametrize("bits", [3, 6])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("granularity", [Granularity.PER_CHANNEL, Granularity.PER_TENSOR])
def test_weight_only_layers_store_bit_planes_and_compute_the_same(quantizer, tmp_path, bits, symmetric, granularity):
    cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=bits, act=ActMode.FLOAT, symmetric=symmetric,
                                                       granularity=granularity))
    exported = export_model(quantizer, cfg)
    x = [{"x": images(32, seed=7)}]
    np.testing.assert_array_equal(run_batches(make_session(exported), x),
                                  run_batches(make_session(quantizer.build(cfg)), x))
    weighted = [layer for layer in quantizer.layers if layer.has_weight]
    planes = _planes(exported)
    assert len(planes) == len(weighted)
    assert sum(len(p.raw_data) for p in planes) == sum(bits * -(-layer.params // 8) for layer in weighted)
    assert not any(i.data_type == onnx.TensorProto.INT8 and i.name.endswith(".w.q") for i in exported.graph.initializer)
    path, folded = tmp_path / "m.onnx", tmp_path / "folded.onnx"
    onnx.save(exported, str(path))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(str(folded)).graph.node}
    assert ops == {"Conv", "Relu", "Flatten", "Gemm"}  # rebuilt and dequantized when the session loads


def test_layers_beside_static_activations_keep_their_storage(quantizer):
    exported = export_model(quantizer, uniform_config(quantizer.layers, LayerConfig(w_bits=3)))
    assert not _planes(exported)
    assert onnx.TensorProto.INT4 in {i.data_type for i in exported.graph.initializer}


def test_a_weight_that_ends_inside_a_byte_is_rebuilt_exactly():
    rng = np.random.default_rng(3)
    w = onnx.numpy_helper.from_array(rng.normal(size=(3, 5)).astype(np.float32), "w")  # 15 weights: 7 bits of padding
    graph = onnx.helper.make_graph([onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "odd",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 5])], [w])
    model = load_model(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]))
    x = rng.normal(size=(16, 3)).astype(np.float32)
    q = Quantizer.calibrated(model, ArrayDataset(inputs={"x": x}, name="odd"), persist=False)
    cfg = uniform_config(q.layers, LayerConfig(w_bits=3, act=ActMode.FLOAT, symmetric=False))
    exported = export_model(q, cfg)
    assert [p.dims for p in _planes(exported)] == [[3, 2]]
    assert "Slice" in {n.op_type for n in exported.graph.node}
    feed = [{"x": x}]
    np.testing.assert_array_equal(run_batches(make_session(exported), feed),
                                  run_batches(make_session(q.build(cfg)), feed))
