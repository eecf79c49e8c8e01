"""External tensor data is read from the model's own folder only, whatever tensor holds the
reference: initializers, Constant nodes, tensors inside If/Loop bodies, sparse tensors."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.cli.main import main
from qaev.errors import ModelError
from qaev.model.graph import load_model
from tests.models import conv_mlp


def all_tensors(model):
    from qaev.model.external import all_tensors

    return all_tensors(model)


def uses_external_data(tensor):
    return tensor.data_location == T.EXTERNAL or len(tensor.external_data) > 0


def read_model_file(path):
    from qaev.model.graph import read_model_file

    return read_model_file(path)


def _externalise(tensor: onnx.TensorProto, location: str, folder) -> None:
    """Move ``tensor``'s values to ``folder/location`` (what a writer of external data does)."""
    data = nh.to_array(tensor).tobytes()
    path = os.path.join(folder, location)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = T.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _constant_weight_model():
    model = conv_mlp(constant_weight=True)
    const = next(n for n in model.graph.node if n.op_type == "Constant")
    return model, const.attribute[0].t


def _if_model():
    """conv_mlp whose output passes through an If whose branches hold a Constant each."""
    model = conv_mlp()
    fc2 = next(n for n in model.graph.node if n.name == "fc2")
    fc2.output[0] = "logits"
    branches = []
    for i, scale in enumerate((1.0, 2.0)):
        const = h.make_node("Constant", [], [f"s{i}"], name=f"c{i}", value=nh.from_array(np.full(10, scale, np.float32),
                                                                                          f"k{i}"))
        mul = h.make_node("Mul", ["logits", f"s{i}"], [f"o{i}"], name=f"mul{i}")
        branches.append(h.make_graph([const, mul], f"b{i}", [], [h.make_tensor_value_info(f"o{i}", T.FLOAT, None)]))
    model.graph.initializer.append(nh.from_array(np.array(True), "cond"))
    model.graph.node.append(h.make_node("If", ["cond"], ["y"], name="if", then_branch=branches[0],
                                        else_branch=branches[1]))
    return model


def test_a_constant_node_cannot_read_a_file_from_the_current_directory(tmp_path, monkeypatch, capsys):
    """The hole: ORT resolves a location left in the bytes qaev hands it against the current
    directory, so a model named a file there and qaev embedded it in its output."""
    model, tensor = _constant_weight_model()
    _externalise(tensor, "secret.bin", tmp_path)  # beside the user's cwd, not beside the model
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(model, str(folder / "m.onnx"))
    monkeypatch.chdir(tmp_path)
    code = main(["quantize", str(folder / "m.onnx"), "--task", "fidelity", "--no-eval", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "secret.bin" in err and "missing" in err, err
    assert not (tmp_path / "q.onnx").exists()


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/hostname", "sub/../../secret.bin"])
def test_locations_escaping_the_folder_are_refused_for_every_tensor_kind(tmp_path, location):
    (tmp_path / "secret.bin").write_bytes(b"\0" * 4096)
    folder = tmp_path / "model"
    folder.mkdir()
    for kind in ("constant", "subgraph"):
        model = _constant_weight_model()[0] if kind == "constant" else _if_model()
        tensor = next(t for t in all_tensors(model) if t.dims and t.name not in ("cond",)
                      and (kind == "constant" or t.name == "k1"))
        _externalise(tensor, "inside.bin", folder)
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(model, str(folder / f"{kind}.onnx"))
        for read in (load_model, read_model_file):
            with pytest.raises(ModelError, match="escapes the model's folder|is missing"):
                read(folder / f"{kind}.onnx")


def test_a_symbolic_link_out_of_the_folder_is_refused(tmp_path):
    model, tensor = _constant_weight_model()
    outside = tmp_path / "outside"
    outside.mkdir()
    _externalise(tensor, "w.bin", outside)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").symlink_to(outside / "w.bin")
    onnx.save(model, str(folder / "m.onnx"))
    with pytest.raises(ModelError, match="escapes"):
        load_model(folder / "m.onnx")


def test_data_inside_the_folder_is_read_in_for_constants_and_subgraphs(tmp_path):
    model, tensor = _constant_weight_model()
    want = nh.to_array(tensor).copy()
    _externalise(tensor, "data/w.bin", tmp_path)
    onnx.save(model, str(tmp_path / "m.onnx"))
    loaded = load_model(tmp_path / "m.onnx")
    assert not any(uses_external_data(t) for t in all_tensors(loaded.proto))
    np.testing.assert_array_equal(loaded.weight("w1"), want)

    branchy = _if_model()
    k1 = next(t for t in all_tensors(branchy) if t.name == "k1")
    _externalise(k1, "k1.bin", tmp_path)
    onnx.save(branchy, str(tmp_path / "if.onnx"))
    raw = read_model_file(tmp_path / "if.onnx")
    assert not any(uses_external_data(t) for t in all_tensors(raw))
    np.testing.assert_array_equal(nh.to_array(next(t for t in all_tensors(raw) if t.name == "k1")), np.full(10, 2.0))


def test_evaluate_checks_the_measured_model_too(tmp_path, monkeypatch, capsys):
    model, tensor = _constant_weight_model()
    _externalise(tensor, "secret.bin", tmp_path)
    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(model, str(folder / "m.onnx"))
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", str(folder / "m.onnx"), "--task", "fidelity", "--reference", str(folder / "m.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "secret.bin" in err, err


def test_external_data_in_a_model_from_bytes_is_refused():
    model, tensor = _constant_weight_model()
    tensor.data_location = T.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "w.bin"
    with pytest.raises(ModelError, match="not read from a file"):
        load_model(model.SerializeToString())


def test_an_offset_past_the_end_of_the_file_is_refused(tmp_path):
    model, tensor = _constant_weight_model()
    _externalise(tensor, "w.bin", tmp_path)
    for entry in tensor.external_data:
        if entry.key == "offset":
            entry.value = "100000"
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelError, match="w.bin"):
        load_model(tmp_path / "m.onnx")
