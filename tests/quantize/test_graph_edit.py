"""Graph editing never mis-wires a valid model: generated names never collide with the
model's own node or tensor names, rewiring follows the graph's edges (not name prefixes),
and tensors read only inside If/Loop/Scan bodies are kept; a written model that would not
load or run is refused instead of written."""
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.cli.main import main
from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, export_model
from tests.models import conv_mlp, images


class _Data:
    """The smallest calibration set :meth:`Quantizer.calibrated` takes."""

    def __init__(self, x):
        self.x = x

    def batches(self, *, batch_size):
        for i in range(0, len(self.x), batch_size):
            yield {"x": self.x[i:i + batch_size]}


def _quantizer(model):
    return Quantizer.calibrated(load_model(model), _Data(images(32)), persist=False)


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _producer(model, tensor):
    return next((n for n in model.graph.node if tensor in n.output), None)


def _stored_weight(model, tensor):
    """The initializer holding the integers behind the dequantized weight ``tensor``:
    ``DequantizeLinear``'s input, or the folded form's ``Cast`` (before ``Sub``/``Mul``)."""
    node = _producer(model, tensor)
    while node.op_type in ("Mul", "Sub"):
        node = _producer(model, node.input[0])
    assert node.op_type in ("DequantizeLinear", "Cast"), node.op_type
    return next(i for i in model.graph.initializer if i.name == node.input[0])


@pytest.mark.parametrize("act, own", [(ActMode.STATIC, "conv1.w.DequantizeLinear"), (ActMode.FLOAT, "conv1.w.CastQ")])
def test_a_node_named_like_qaevs_own_still_quantizes_and_exports(act, own):
    """An original node called ``conv1.w.DequantizeLinear`` or ``conv1.w.CastQ`` (what qaev
    names the weight dequantization of layer conv1, beside static activations or folded)
    must not be taken for qaev's node."""
    model = conv_mlp()
    relu = next(n for n in model.graph.node if n.name == "relu1")
    relu.name = own
    q = _quantizer(model)
    config = QuantConfig(layers={name: LayerConfig(w_bits=4, act=act) for name in q.layer_names})
    built = q.build(config)
    names = [n.name for n in built.graph.node]
    assert len(names) == len(set(names)), "two nodes share a name"
    exported = export_model(q, config)
    onnx.checker.check_model(exported)
    x = images(8, seed=3)
    np.testing.assert_allclose(_run(exported, x), _run(built, x), rtol=1e-5, atol=1e-5)
    conv = next(n for n in exported.graph.node if n.name == "conv1")
    assert _stored_weight(exported, conv.input[1]).data_type == T.INT4, \
        "the weight of conv1 was not narrowed: export edited another node"


def test_an_original_node_whose_name_starts_with_the_activation_prefix_reads_the_quantized_tensor():
    """qaev names the Q/DQ pair of activation ``x`` ``act.x.*``; an original layer called
    ``act.x.conv`` once kept reading the float ``x``, silently skipping its quantization."""
    model = conv_mlp()
    conv = next(n for n in model.graph.node if n.name == "conv1")
    conv.name = "act.x.conv"
    q = _quantizer(model)
    config = QuantConfig(layers={"act.x.conv": LayerConfig(w_bits=8, act=ActMode.STATIC)})
    built = q.build(config)
    node = next(n for n in built.graph.node if n.name == "act.x.conv")
    producer = _producer(built, node.input[0])
    assert producer is not None and producer.op_type == "DequantizeLinear", "the layer reads the float input"


def _outer_initializer_in_branches(*, batchnorm=False):
    """conv_mlp whose logits go through an If; the branches scale them by initializers of
    the main graph that nothing else reads."""
    model = conv_mlp(batchnorm=batchnorm)
    fc2 = next(n for n in model.graph.node if n.name == "fc2")
    fc2.output[0] = "logits"
    branches = [h.make_graph([h.make_node("Mul", ["logits", k], [f"o{i}"], name=f"mul{i}")], f"b{i}", [],
                             [h.make_tensor_value_info(f"o{i}", T.FLOAT, None)])
                for i, k in enumerate(("k_then", "k_else"))]
    model.graph.initializer.extend([nh.from_array(np.full(10, 2.0, np.float32), "k_then"),
                                    nh.from_array(np.full(10, 3.0, np.float32), "k_else"),
                                    nh.from_array(np.array(True), "cond")])
    model.graph.node.append(h.make_node("If", ["cond"], ["y"], name="if", then_branch=branches[0],
                                        else_branch=branches[1]))
    return model


@pytest.mark.parametrize("batchnorm", [False, True])  # folding a BatchNormalization prunes initializers too
def test_initializers_read_only_inside_control_flow_are_kept(batchnorm):
    model = _outer_initializer_in_branches(batchnorm=batchnorm)
    q = _quantizer(model)
    config = QuantConfig(layers={name: LayerConfig(w_bits=8, act=ActMode.STATIC) for name in q.layer_names})
    for proto in (q.build(config), export_model(q, config)):
        assert {"k_then", "k_else"} <= {i.name for i in proto.graph.initializer}
        out = _run(proto, images(4))
        float_out = _run(model, images(4))
        assert np.abs(out - float_out).max() < 0.2 * np.abs(float_out).max()


def test_a_branch_reading_a_quantized_output_is_ordered_after_its_producer():
    """fc2's output is both a graph output (so its Q/DQ pair produces it at the end of the
    node list) and read inside an If body: the If must come after that pair."""
    model = _outer_initializer_in_branches()
    model.graph.output.append(h.make_tensor_value_info("logits", T.FLOAT, ["N", 10]))
    q = _quantizer(model)
    config = QuantConfig(layers={"fc2": LayerConfig(w_bits=8, act=ActMode.STATIC)})
    built = q.build(config)
    order = [n.name for n in built.graph.node]
    producer = _producer(built, "logits")
    assert order.index(producer.name) < order.index("if")
    _run(built, images(4))


def test_the_written_model_is_checked_before_it_is_written(tmp_path, capsys, monkeypatch):
    """quantize --no-eval and export run the file they write on a sample; one that does not
    load or run is not written and the command exits 2."""
    model_path = tmp_path / "m.onnx"
    onnx.save(conv_mlp(), str(model_path))

    def broken(quantizer, config, **kw):
        proto = export_model(quantizer, config, **kw)
        proto.graph.node[0].input[0] = "nowhere"  # a dangling input: ORT refuses the model
        return proto

    monkeypatch.setattr(sys.modules["qaev.cli.main"], "export_model", broken)
    out = tmp_path / "q.onnx"
    code = main(["quantize", str(model_path), "--task", "fidelity", "--no-eval", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "q.onnx" in err and "not written" in err, err
    assert not out.exists()
