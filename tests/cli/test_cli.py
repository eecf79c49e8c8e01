import json
import subprocess
import sys

import pytest
import yaml

from qaev.cli.main import main
from qaev.data import digits_model_path
from tests.models import conv_mlp


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_quantize_then_apply_reproduces_evaluate_exactly(tmp_path, capsys):
    out, cfg = tmp_path / "w4.onnx", tmp_path / "w4.yaml"
    code, text, _ = run(capsys, "quantize", "--w-bits", "4", "--per-channel", "-o", out, "--save-config", cfg, "--json")
    assert code == 0
    summary = json.loads(text)
    assert 0 < summary["size_mb"] * 1e6 <= summary["bytes"] < summary["float_bytes"]  # bits <= file (graph, names)
    code, text, _ = run(capsys, "evaluate", out, "--task", "digits", "--json")
    first = json.loads(text)
    assert first["metric"] == "top1" and first["n"] == 497 and first["value"] == summary["value"]
    assert "drop" not in first  # no float model to pair with
    code, text, _ = run(capsys, "evaluate", out, "--task", "digits", "--reference", digits_model_path(), "--json")
    paired = json.loads(text)  # against float on the same items, as quantize measured it
    assert (paired["drop"], paired["drop_se"]) == pytest.approx((summary["drop"], summary["drop_se"]))
    rebuilt = tmp_path / "again.onnx"
    assert run(capsys, "apply", cfg, digits_model_path(), "-o", rebuilt)[0] == 0
    second = json.loads(run(capsys, "evaluate", rebuilt, "--task", "digits", "--json")[1])
    assert second["value"] == first["value"]
    assert rebuilt.read_bytes() == out.read_bytes()


def test_apply_rebuilds_a_gptq_config_from_the_data_it_was_built_with(tmp_path, capsys):
    out, cfg = tmp_path / "gptq.onnx", tmp_path / "gptq.yaml"
    assert run(capsys, "quantize", "--w-bits", "3", "--a-bits", "float", "--per-channel", "--rounding", "gptq",
               "--bias-correction", "--no-eval", "-o", out, "--save-config", cfg)[0] == 0
    rebuilt = tmp_path / "again.onnx"
    assert run(capsys, "apply", cfg, "--problem", "digits", "-o", rebuilt)[0] == 0
    assert rebuilt.read_bytes() == out.read_bytes()
    code, _, err = run(capsys, "apply", cfg, digits_model_path(), "-o", tmp_path / "x.onnx")
    _one_line_error(code, err, "gptq.yaml", "calibration data", "--problem")
    code, _, err = run(capsys, "apply", cfg, "-o", tmp_path / "x.onnx")
    _one_line_error(code, err, "exactly one of MODEL or --problem")


def test_apply_with_a_problem_reads_no_data_when_the_config_needs_none(tmp_path, capsys, monkeypatch):
    from qaev import problems
    from qaev.problems import registry

    out, cfg = tmp_path / "w4.onnx", tmp_path / "w4.yaml"
    assert run(capsys, "quantize", "--w-bits", "4", "--per-channel", "--no-eval", "-o", out,
               "--save-config", cfg)[0] == 0

    def no_data(*args, **kwargs):
        raise AssertionError("apply loaded the problem's data")

    monkeypatch.setattr(registry, "problem_parts", no_data)
    monkeypatch.setattr(problems, "problem_parts", no_data)
    rebuilt = tmp_path / "again.onnx"
    assert run(capsys, "apply", cfg, "--problem", "digits", "-o", rebuilt)[0] == 0
    assert rebuilt.read_bytes() == out.read_bytes()


def test_quantize_sets_excluded_and_frozen_layers_apart(tmp_path, capsys):
    frozen, cfg = tmp_path / "frozen.yaml", tmp_path / "cfg.yaml"
    frozen.write_text("re:Gemm$: {w_bits: 8, act: float}\n")
    code, _, _ = run(capsys, "quantize", "--w-bits", "4", "--per-channel", "--freeze", frozen, "--exclude", "/0/Conv",
                     "--no-eval", "-o", tmp_path / "m.onnx", "--save-config", cfg)
    assert code == 0
    layers = yaml.safe_load(cfg.read_text())["layers"]
    assert "/0/Conv" not in layers
    gemms = {name: c for name, c in layers.items() if name.endswith("Gemm")}
    assert gemms and all(c["w_bits"] == 8 and c["act"] == "float" for c in gemms.values())
    others = [c for name, c in layers.items() if name not in gemms]
    assert others and all(c["w_bits"] == 4 for c in others)
    code, _, err = run(capsys, "quantize", "--exclude", "re:nothing", "--no-eval", "-o", tmp_path / "x.onnx")
    _one_line_error(code, err, "re:nothing", "matches no layer")


def test_four_bit_file_is_at_most_0_6_of_eight_bit(tmp_path, capsys):
    sizes = {}
    for bits in (4, 8):
        path = tmp_path / f"w{bits}.onnx"
        assert run(capsys, "quantize", "--w-bits", bits, "--per-channel", "--no-eval", "-o", path)[0] == 0
        sizes[bits] = path.stat().st_size
    assert sizes[4] <= 0.6 * sizes[8]


def test_compact_names_write_a_smaller_file_that_measures_the_same(tmp_path, capsys):
    summaries = {}
    for flag in ((), ("--compact-names",)):
        path = tmp_path / f"m{len(flag)}.onnx"
        assert run(capsys, "quantize", "--w-bits", "3", "--a-bits", "float", "--per-channel", *flag, "-o", path,
                   "--json")[0] == 0
        evaluated = json.loads(run(capsys, "evaluate", path, "--task", "digits", "--json")[1])
        summaries[flag] = (path.stat().st_size, evaluated["value"])
    (plain, plain_value), (compact, compact_value) = summaries.values()
    assert compact < plain and compact_value == plain_value


def _one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("qaev: error:"), err
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize("content", [b"garbage bytes", b""])
def test_bad_model_file(tmp_path, capsys, content):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(content)
    code, _, err = run(capsys, "quantize", bad, "--task", "digits", "-o", tmp_path / "o.onnx")
    _one_line_error(code, err, "broken.onnx")


def test_truncated_model_file(tmp_path, capsys):
    bad = tmp_path / "cut.onnx"
    bad.write_bytes(digits_model_path().read_bytes()[:1000])
    code, _, err = run(capsys, "apply", _config(tmp_path), bad, "-o", tmp_path / "o.onnx")
    _one_line_error(code, err, "cut.onnx")


def test_model_with_nothing_to_quantize(tmp_path, capsys):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(g), str(path))
    code, _, err = run(capsys, "quantize", path, "-o", tmp_path / "o.onnx")
    _one_line_error(code, err, "no quantizable layer")


def _config(tmp_path, text="version: 1\nlayers: {}\n"):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text,needle", [
    ("version: 1\nlayers: {}\nbogus: 3\n", "'bogus'"),
    ("version: 1\nlayers:\n  conv1: {w_bits: 5}\n", "w_bits"),
    ("version: 1\nlayers:\n  no_such_layer: {w_bits: 8}\n", "no_such_layer"),
    ("version: 1\nlayers:\n  /conv1/Conv: {w_bits: 8, colour: red}\n", "colour"),
    ("layers: [1, 2\n", "not valid YAML"),
    ("version: 7\nlayers: {}\n", "version"),
])
def test_invalid_config(tmp_path, capsys, text, needle):
    code, _, err = run(capsys, "apply", _config(tmp_path, text), digits_model_path(), "-o", tmp_path / "o.onnx")
    _one_line_error(code, err, needle)


def test_config_for_another_model_is_refused(tmp_path, capsys):
    import onnx

    other = tmp_path / "other.onnx"
    onnx.save(conv_mlp(), str(other))
    cfg = tmp_path / "w8.yaml"
    assert run(capsys, "quantize", "--no-eval", "-o", tmp_path / "q.onnx", "--save-config", cfg)[0] == 0
    code, _, err = run(capsys, "apply", cfg, other, "-o", tmp_path / "o.onnx")
    _one_line_error(code, err, "model_sha256")


def test_entry_point_prints_no_traceback(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"\x00\x01")
    proc = subprocess.run([sys.executable, "-m", "qaev.cli", "evaluate", str(bad), "--task", "digits"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "x.onnx" in proc.stderr


def test_evaluate_can_measure_host_latency(capsys):
    code, text, _ = run(capsys, "evaluate", "--latency", "4", "--json")
    assert code == 0
    result = json.loads(text)
    assert result["host_latency_ms"] > 0 and result["latency_batch"] == 4 and result["n"] == 497
    code, _, err = run(capsys, "evaluate", "--latency", "0")
    assert code == 2 and "--latency" in err


def test_quantize_reports_the_drop_with_its_paired_standard_error(tmp_path, capsys):
    code, text, _ = run(capsys, "quantize", "--w-bits", "2", "-o", tmp_path / "w2.onnx", "--json")
    summary = json.loads(text)
    assert code == 0 and summary["drop"] > 0
    assert 0 < summary["drop_se"] < summary["drop"]  # 2-bit digits: a clear loss, hundreds of items
    code, text, _ = run(capsys, "quantize", "--w-bits", "2", "-o", tmp_path / "again.onnx")
    assert f"drop {summary['drop']:.2f} ± {summary['drop_se']:.2f} paired s.e." in text
