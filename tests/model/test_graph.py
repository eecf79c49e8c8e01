import numpy as np
import onnx
import pytest

from qaev.errors import ModelError
from qaev.model.graph import load_model
from qaev.model.layers import find_layers
from qaev.quantize import Quantizer, uniform_config
from qaev.config import LayerConfig
from qaev.model.session import make_session, run_batches
from tests.models import attention_like, conv_mlp, images


def _run(proto, x):
    return run_batches(make_session(proto), [{"x": x}])


def test_layers_shapes_macs_and_params():
    layers = {layer.name: layer for layer in find_layers(load_model(conv_mlp()))}
    assert list(layers) == ["conv1", "fc1", "fc2"]
    assert layers["conv1"].macs == 8 * 6 * 6 * 3 * 3 * 3
    assert layers["fc1"].macs == 288 * 32 and layers["fc1"].weight_shape == (288, 32)
    assert layers["fc2"].macs == 32 * 10 and layers["fc2"].channel_axis == 0 and layers["fc2"].reduce_axis == 1
    assert layers["conv1"].params == 216
    assert layers["conv1"].output == "r1"  # quantized after the fused Relu
    assert layers["fc1"].output == "m2"  # Add follows, not a fused activation


def test_constant_node_weights_become_initializers():
    a, b = load_model(conv_mlp()), load_model(conv_mlp(constant_weight=True))
    assert not any(n.op_type == "Constant" for n in b.proto.graph.node)
    la, lb = find_layers(a), find_layers(b)
    assert [layer.weight_shape for layer in la] == [layer.weight_shape for layer in lb]
    x = images()
    np.testing.assert_array_equal(_run(a.proto, x), _run(b.proto, x))


def test_opset11_is_raised_and_runs():
    model = load_model(conv_mlp(opset=11))
    assert model.opset == 21
    x = images()
    ref = run_batches(make_session(conv_mlp(opset=11)), [{"x": x}])
    np.testing.assert_allclose(_run(model.proto, x), ref, rtol=1e-5, atol=1e-5)


def test_batchnorm_is_folded_without_changing_outputs():
    raw = conv_mlp(batchnorm=True)
    model = load_model(raw)
    assert not any(n.op_type == "BatchNormalization" for n in model.proto.graph.node)
    x = images()
    ref = run_batches(make_session(raw), [{"x": x}])
    np.testing.assert_allclose(_run(model.proto, x), ref, rtol=1e-4, atol=1e-5)


def test_dynamic_batch_runs_any_batch_and_macs_are_per_sample():
    model = load_model(conv_mlp(batch="batch"))
    q = Quantizer.calibrated(model, _dataset(images(16)), persist=False)
    built = make_session(q.build(uniform_config(q.layers, LayerConfig())))
    for n in (1, 5):
        assert built.run(None, {"x": images(n)})[0].shape == (n, 10)
    assert find_layers(model)[0].macs == 7776


def test_attention_layers_need_shapes_from_a_batch():
    model = load_model(attention_like())
    layers = {layer.name: layer for layer in find_layers(model, input_shapes={"ids": (4, 7)})}
    assert layers["embed"].op_type == "Gather" and layers["embed"].macs == 0
    assert layers["proj"].op_type == "MatMul" and layers["proj"].macs == 7 * 64 * 64
    assert layers["scores"].op_type == "MatMulAct" and layers["scores"].macs == 7 * 7 * 64
    assert not layers["scores"].has_weight and not layers["embed"].supports_activations


def test_already_quantized_model_is_refused():
    model = load_model(conv_mlp())
    q = Quantizer.calibrated(model, _dataset(images(8)), persist=False)
    quantized = q.build(uniform_config(q.layers, LayerConfig()))
    with pytest.raises(ModelError, match="already quantized"):
        load_model(quantized)


@pytest.mark.parametrize("data", [b"", b"not an onnx model at all", None])
def test_garbage_and_truncated_files_are_refused(tmp_path, data):
    if data is None:
        data = conv_mlp().SerializeToString()[:150]
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="bad.onnx"):
        load_model(path)


def test_model_without_quantizable_layers_is_refused():
    g = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                               [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                               [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    with pytest.raises(ModelError, match="no quantizable layer"):
        find_layers(load_model(onnx.helper.make_model(g)))


def test_external_data_escaping_the_folder_is_refused(tmp_path):
    model = conv_mlp()
    w = next(i for i in model.graph.initializer if i.name == "w2")
    w.ClearField("raw_data")
    del w.float_data[:]
    w.data_location = onnx.TensorProto.EXTERNAL
    w.external_data.add(key="location", value="../../etc/passwd")
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(ModelError, match="escapes"):
        load_model(path)


def _dataset(x):
    from qaev.data import ArrayDataset

    return ArrayDataset(inputs={"x": x}, labels=None, name="random")
