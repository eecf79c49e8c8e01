"""Exported files with short internal names: smaller, fed and read the same, same outputs."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from qaev.config import ActMode, LayerConfig
from qaev.data import ArrayDataset
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.names import compact_names
from qaev.model.session import make_session, run_batches
from tests.models import conv_mlp, images


@pytest.fixture(scope="module")
def quantizer():
    return Quantizer.calibrated(load_model(conv_mlp()), ArrayDataset(inputs={"x": images(64)}, name="rand"),
                                persist=False)


@pytest.mark.parametrize("layer", [LayerConfig(w_bits=3, act=ActMode.FLOAT), LayerConfig(w_bits=4),
                                   LayerConfig(w_bits=8, act=ActMode.DYNAMIC)])
def test_compact_export_computes_the_same_in_fewer_bytes(quantizer, layer):
    cfg = uniform_config(quantizer.layers, layer)
    plain, compact = export_model(quantizer, cfg), export_model(quantizer, cfg, compact=True)
    onnx.checker.check_model(compact)
    assert compact.ByteSize() < plain.ByteSize()
    assert [i.name for i in compact.graph.input] == [i.name for i in plain.graph.input]
    assert [o.name for o in compact.graph.output] == [o.name for o in plain.graph.output]
    assert sorted(len(i.raw_data) for i in compact.graph.initializer) == sorted(
        len(i.raw_data) for i in plain.graph.initializer)  # only names changed
    produced = [o for n in compact.graph.node for o in n.output] + [i.name for i in compact.graph.initializer]
    assert len(produced) == len(set(produced))
    x = [{"x": images(16, seed=3)}]
    np.testing.assert_array_equal(run_batches(make_session(compact), x), run_batches(make_session(plain), x))


def test_new_names_avoid_the_kept_ones():
    # graph input "0" and output "1" look like counters: internal tensors must not take them
    node = helper.make_node("Relu", ["0"], ["long_internal_name"], name="first")
    node2 = helper.make_node("Neg", ["long_internal_name"], ["1"], name="second")
    graph = helper.make_graph([node, node2], "g", [helper.make_tensor_value_info("0", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("1", TensorProto.FLOAT, [2])])
    out = compact_names(helper.make_model(graph))
    inner = out.graph.node[0].output[0]
    assert inner not in ("0", "1", "long_internal_name") and out.graph.node[1].input[0] == inner
    assert all(n.name == "" for n in out.graph.node)
    onnx.checker.check_model(out)


def test_models_with_control_flow_keep_their_names():
    then = helper.make_graph([helper.make_node("Identity", ["outer_x"], ["t"])], "then", [],
                             [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])])
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=then, name="branch")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["outer_x"]), node], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                               helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph)
    assert compact_names(model) == model
