"""Inputs qaev cannot quantize are refused up front, before any candidate runs; inputs it can
are handled as they are: generated data keeps every static dim the model declares."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.cli.main import main
from qaev.data.tasks import DataOptions, load_task
from qaev.errors import ModelError
from qaev.model.graph import load_model
from qaev.model.layers import find_layers
from tests.models import conv_mlp


def _half(model, dtype=np.float16, elem=T.FLOAT16):
    for i, init in enumerate(model.graph.initializer):
        model.graph.initializer[i].CopyFrom(nh.from_array(nh.to_array(init).astype(dtype), init.name))
    for v in list(model.graph.input) + list(model.graph.output):
        v.type.tensor_type.elem_type = elem
    return model


def test_a_float16_model_is_refused_before_any_candidate_runs(tmp_path, capsys):
    path = tmp_path / "fp16.onnx"
    onnx.save(_half(conv_mlp()), str(path))
    code = main(["search", str(path), "--pop", "4", "--generations", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "half precision" in err and "candidates" not in err, err


def test_bfloat16_weights_and_casts_to_half_are_refused():
    model = conv_mlp()
    w3 = next(i for i in model.graph.initializer if i.name == "w3")
    w3.CopyFrom(h.make_tensor("w3", T.BFLOAT16, list(w3.dims), np.zeros(int(np.prod(w3.dims)), np.uint16).tolist()))
    with pytest.raises(ModelError, match="half precision"):
        load_model(model)
    model = conv_mlp()
    relu = next(n for n in model.graph.node if n.name == "relu1")
    relu.output[0] = "r1h"
    model.graph.node.extend([h.make_node("Cast", ["r1h"], ["r1f"], name="to_half", to=T.FLOAT16),
                             h.make_node("Cast", ["r1f"], ["r1"], name="back", to=T.FLOAT)])
    with pytest.raises(ModelError, match="half precision.*to_half"):
        load_model(model)


def _stateful(*, state_shape=(2, 1, 8)):
    """A recurrent-style model: x [1, 16], state [2, 1, 8] and a scalar sample rate in; a
    projection of x (scaled by the rate) and the state's update out."""
    rng = np.random.default_rng(0)
    w = (rng.normal(size=(16, 4)) * 0.3).astype(np.float32)
    u = (rng.normal(size=(8, 8)) * 0.3).astype(np.float32)
    nodes = [h.make_node("MatMul", ["x", "w"], ["p"], name="proj"),
             h.make_node("Cast", ["sr"], ["srf"], name="cast", to=T.FLOAT),
             h.make_node("Mul", ["p", "srf"], ["y"], name="scale"),
             h.make_node("MatMul", ["state", "u"], ["s1"], name="update"),
             h.make_node("Tanh", ["s1"], ["new_state"], name="tanh")]
    graph = h.make_graph(nodes, "stateful",
                         [h.make_tensor_value_info("x", T.FLOAT, [1, 16]),
                          h.make_tensor_value_info("state", T.FLOAT, list(state_shape)),
                          h.make_tensor_value_info("sr", T.INT64, [])],
                         [h.make_tensor_value_info("y", T.FLOAT, [1, 4]),
                          h.make_tensor_value_info("new_state", T.FLOAT, list(state_shape))],
                         [nh.from_array(w, "w"), nh.from_array(u, "u")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_generated_inputs_keep_every_static_dim(tmp_path):
    path = tmp_path / "stateful.onnx"
    onnx.save(_stateful(), str(path))
    with pytest.warns(UserWarning, match="generated from the model's input shapes"):
        task = load_task(DataOptions(task="fidelity"), load_model(path))
    feed = next(iter(task.eval.batches(batch_size=64)))
    assert feed["state"].shape == (2, 1, 8) and feed["x"].shape == (1, 16) and feed["sr"].shape == ()


def test_a_model_with_a_state_input_and_a_scalar_quantizes(tmp_path, capsys):
    path = tmp_path / "stateful.onnx"
    onnx.save(_stateful(), str(path))
    code = main(["quantize", str(path), "--task", "fidelity", "-o", str(tmp_path / "q.onnx"), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "generated" in err  # says the inputs were made up


def _branchy():
    """Every Conv sits inside the branches of an If on a scalar input (a voice-activity
    model choosing its filters by sample rate)."""
    rng = np.random.default_rng(0)
    branches = []
    for i in range(2):
        w = nh.from_array((rng.normal(size=(4, 1, 3)) * 0.3).astype(np.float32), f"w{i}")
        conv = h.make_node("Conv", ["x", f"w{i}"], [f"c{i}"], name=f"conv{i}")
        branches.append(h.make_graph([conv], f"b{i}", [], [h.make_tensor_value_info(f"c{i}", T.FLOAT, None)], [w]))
    nodes = [h.make_node("Equal", ["sr", "k16000"], ["is16k"], name="eq"),
             h.make_node("If", ["is16k"], ["y"], name="by_rate", then_branch=branches[0], else_branch=branches[1])]
    graph = h.make_graph(nodes, "vad", [h.make_tensor_value_info("x", T.FLOAT, ["N", 1, 64]),
                                        h.make_tensor_value_info("sr", T.INT64, [])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N", 4, 62])],
                         [nh.from_array(np.array(16000, np.int64), "k16000")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_layers_inside_control_flow_are_named_as_such(tmp_path, capsys):
    path = tmp_path / "vad.onnx"
    onnx.save(_branchy(), str(path))
    code = main(["quantize", str(path), "--task", "fidelity", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "inside control flow" in err and "If 'by_rate'" in err, err


def test_layers_inside_control_flow_beside_main_graph_layers_are_warned_about():
    model = conv_mlp()
    fc2 = next(n for n in model.graph.node if n.name == "fc2")
    fc2.output[0] = "logits"
    w = nh.from_array(np.eye(10, dtype=np.float32), "wb")
    body = h.make_graph([h.make_node("MatMul", ["logits", "wb"], ["o"], name="inner")], "b", [],
                        [h.make_tensor_value_info("o", T.FLOAT, None)], [w])
    ident = h.make_graph([h.make_node("Identity", ["logits"], ["o2"], name="same")], "c", [],
                         [h.make_tensor_value_info("o2", T.FLOAT, None)])
    model.graph.initializer.append(nh.from_array(np.array(True), "cond"))
    model.graph.node.append(h.make_node("If", ["cond"], ["y"], name="gate", then_branch=body, else_branch=ident))
    with pytest.warns(UserWarning, match="inside control flow.*stay float"):
        layers = find_layers(load_model(model))
    assert [la.name for la in layers] == ["conv1", "fc1", "fc2"]


def test_an_input_that_declares_no_shape_takes_its_shape_from_the_command(tmp_path, capsys):
    model = conv_mlp()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    path = tmp_path / "noshape.onnx"
    onnx.save(model, str(path))
    code = main(["quantize", str(path), "--task", "fidelity", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "declares no shape" in err and "--shape x=" in err, err
    code = main(["quantize", str(path), "--task", "fidelity", "--shape", "x=1x3x8x8", "-o", str(tmp_path / "q.onnx")])
    assert code == 0, capsys.readouterr().err
