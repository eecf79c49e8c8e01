"""Bad input through the CLI: one line naming the problem, exit code 2, no traceback."""
import numpy as np
import onnx
from onnx import helper

from qaev.cli.main import main
from tests.models import attention_like, conv_mlp


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.startswith("qaev: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_already_quantized_model(tmp_path, capsys):
    q = tmp_path / "q.onnx"
    assert run(capsys, "quantize", "--no-eval", "-o", q)[0] == 0
    code, _, err = run(capsys, "quantize", q, "--task", "digits", "-o", tmp_path / "again.onnx")
    one_line_error(code, err, "already quantized")


def test_layer_next_to_custom_domain_op_is_skipped_with_a_warning(tmp_path, capsys):
    model = conv_mlp()
    relu2 = next(n for n in model.graph.node if n.name == "relu2")
    relu2.op_type, relu2.domain = "Gelu", "com.microsoft"
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    path = _save(model, tmp_path / "custom.onnx")
    code, out, err = run(capsys, "quantize", path, "--task", "fidelity", "-o", tmp_path / "o.onnx", "--json")
    assert code == 0, err
    assert "qaev: warning: layer 'fc2' skipped" in err and "com.microsoft" not in out


def test_dynamic_dims_that_cannot_be_resolved(tmp_path, capsys):
    path = _save(attention_like(), tmp_path / "attn.onnx")
    code, _, err = run(capsys, "quantize", path, "--task", "fidelity", "-o", tmp_path / "o.onnx")
    one_line_error(code, err, "'ids'", "--shape")
    code, _, err = run(capsys, "quantize", path, "--task", "fidelity", "--shape", "ids=1x6", "-o", tmp_path / "o.onnx")
    assert code == 0, err


def _feeds(folder, **arrays):
    folder.mkdir()
    np.savez(folder / "a.npz", **arrays)
    return folder


def test_data_with_wrong_input_names(tmp_path, capsys):
    data = _feeds(tmp_path / "feeds", image=np.zeros((40, 3, 8, 8), np.float32))
    path = _save(conv_mlp(), tmp_path / "m.onnx")
    code, _, err = run(capsys, "quantize", path, "--task", "fidelity", "--data", data, "-o", tmp_path / "o.onnx")
    one_line_error(code, err)
    assert "image" in err or "'x'" in err


def test_data_with_wrong_shape_or_dtype(tmp_path, capsys):
    path = _save(conv_mlp(), tmp_path / "m.onnx")
    for i, arr in enumerate([np.zeros((40, 3, 9, 9), np.float32), np.zeros((40, 3, 8, 8), np.float64)]):
        data = _feeds(tmp_path / f"feeds{i}", x=arr)
        code, _, err = run(capsys, "quantize", path, "--task", "fidelity", "--data", data, "-o", tmp_path / "o.onnx")
        one_line_error(code, err, "'x'")


def test_empty_and_too_small_datasets(tmp_path, capsys):
    path = _save(conv_mlp(), tmp_path / "m.onnx")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "quantize", path, "--task", "fidelity", "--data", empty, "-o", tmp_path / "o.onnx")
    one_line_error(code, err)
    small = _feeds(tmp_path / "small", x=np.zeros((1, 3, 8, 8), np.float32))
    code, _, err = run(capsys, "quantize", path, "--task", "fidelity", "--data", small, "-o", tmp_path / "o.onnx")
    one_line_error(code, err, "samples")


def test_nan_in_model_outputs(tmp_path, capsys):
    model = conv_mlp()
    fc2 = next(n for n in model.graph.node if n.name == "fc2")
    fc2.output[0] = "pre"
    model.graph.node.append(helper.make_node("Log", ["pre"], ["y"], name="log"))  # log of negatives: NaN
    path = _save(model, tmp_path / "nan.onnx")
    code, _, err = run(capsys, "evaluate", path, "--task", "fidelity", "--reference", path)
    one_line_error(code, err, "NaN")


def test_malformed_hardware_table(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: bad\n")
    code, _, err = run(capsys, "search", "--hardware", bad, "--objectives", "acc_drop,est_latency_ms",
                       "--pop", 4, "--generations", 1, "--out", tmp_path / "run")
    one_line_error(code, err, "bad.yaml")


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "search", "--pop", 4, "--generations", 1, "--out", blocker / "run")
    one_line_error(code, err, "--out")


def test_unknown_objective_and_option_errors(tmp_path, capsys):
    code, _, err = run(capsys, "search", "--objectives", "acc_drop,speed", "--out", tmp_path / "r")
    one_line_error(code, err, "'speed'")
    code, _, err = run(capsys, "search", "--objectives", "acc_drop,est_latency_ms", "--out", tmp_path / "r2")
    one_line_error(code, err, "--hardware")
