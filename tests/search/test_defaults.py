"""Default spaces come from the model's layers (its family) and the preset, not the problem's name."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from PIL import Image

from qaev.cli.main import main
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.model.layers import find_layers
from qaev.search.defaults import PRESETS, default_space, family
from tests.models import attention_like, conv_mlp


def _image_cnn(classes: int = 4) -> onnx.ModelProto:
    """A small CNN on 16x16 RGB images: two convolutions and a classifier."""
    rng = np.random.default_rng(0)
    w1 = nh.from_array((rng.normal(size=(8, 3, 3, 3)) * 0.3).astype(np.float32), "w1")
    w2 = nh.from_array((rng.normal(size=(16, 8, 3, 3)) * 0.2).astype(np.float32), "w2")
    w3 = nh.from_array((rng.normal(size=(classes, 16)) * 0.3).astype(np.float32), "w3")
    nodes = [h.make_node("Conv", ["img", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             h.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             h.make_node("Conv", ["r1", "w2"], ["c2"], name="conv2", pads=[1, 1, 1, 1], strides=[2, 2]),
             h.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             h.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
             h.make_node("Flatten", ["p"], ["f"], name="flatten"),
             h.make_node("Gemm", ["f", "w3"], ["y"], name="fc", transB=1)]
    graph = h.make_graph(nodes, "cnn", [h.make_tensor_value_info("img", T.FLOAT, ["N", 3, 16, 16])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N", classes])], [w1, w2, w3])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def test_the_family_follows_where_the_weights_are():
    from qaev.data import digits_model_path

    assert family(find_layers(load_model(digits_model_path()))) == "cnn"  # its Gemm holds most weights, Conv most MACs
    assert family(find_layers(load_model(conv_mlp()))) == "transformer"  # a toy whose MatMul does most of the work
    assert family(find_layers(load_model(_image_cnn()))) == "cnn"
    assert family(find_layers(load_model(attention_like()))) == "transformer"


def test_presets_fill_only_what_the_user_left_unset():
    layers = find_layers(load_model(_image_cnn()))
    space = default_space(layers, given={"w_bits": (2, 8)})
    assert space.w_bits == (2, 8) and space.roundings == ("gptq",) and space.acts == ("float",)
    assert default_space(layers, preset="latency-host").acts == ("a8", "float")
    assert default_space(layers, has_data=False).roundings == ("nearest",)
    for name in PRESETS:
        assert default_space(layers, preset=name).complete
    with pytest.raises(ConfigError, match="preset"):
        default_space(layers, preset="fastest")


def test_an_own_cnn_on_an_image_folder_gets_the_built_in_cnns_defaults(tmp_path, capsys):
    model = tmp_path / "mine.onnx"
    onnx.save(_image_cnn(), str(model))
    folder = tmp_path / "images"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = ["filename,class_index"]
    for i in range(48):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / "images" / f"{i}.png")
        rows.append(f"{i}.png,{i % 4}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    own, builtin = tmp_path / "own", tmp_path / "digits"
    args = ["--pop", "4", "--generations", "1", "--sensitivity", "none", "--max-drop", "100", "--quiet"]
    assert main(["search", str(model), "--task", "imagenet", "--data", str(folder), "--size", "16", "--calib", "16",
                 "--out", str(own), *args]) == 0
    assert main(["search", "--problem", "digits", "--out", str(builtin), *args]) == 0
    spaces = [json.loads((run / "front.json").read_text())["space"] for run in (own, builtin)]
    for space in spaces:
        space.pop("searchable_layers")
    assert spaces[0] == spaces[1] and spaces[0]["roundings"] == ["gptq"]
