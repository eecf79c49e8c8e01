"""benchmarks/host_latency.py: every model measured at every batch, float as the reference."""
import pytest

from tests.paths import load_benchmark

host_latency = load_benchmark("host_latency")


def test_every_model_is_measured_at_every_batch(capsys):
    result = host_latency.main(["--problem", "digits", "--w-bits", "8,6", "--batches", "1,4",
                                "--rounds", "2", "--repeats", "2", "--profile"])
    assert result["split"] == "evaluation split"  # digits has no test split of its own
    models = result["models"]
    assert list(models) == ["float", "dynamic int8, 8-bit weights", "dynamic int8, 6-bit weights"]
    assert models["float"]["drop"] == 0.0
    for row in models.values():
        assert set(row["latency_ms"]) == {1, 4} and all(ms > 0 for ms in row["latency_ms"].values())
        assert 0.0 <= row["metric"] <= 100.0
    out = capsys.readouterr().out
    assert "dynamic int8, 6-bit weights" in out and "1.00x" in out
    assert "kernel time per operator type at batch 4" in out
    assert any(op in models["float"]["kernel_ms_by_op"] for op in ("Conv", "FusedConv"))
    assert any(op.startswith("DynamicQuantize") for op in models["dynamic int8, 8-bit weights"]["kernel_ms_by_op"])


def test_the_control_is_the_float_model_measured_again():
    result = host_latency.main(["--problem", "digits", "--w-bits", "8", "--batches", "2", "--rounds", "2",
                                "--repeats", "2", "--control"])
    control, plain = result["models"][host_latency.CONTROL], result["models"]["float"]
    assert control["drop"] == 0.0 and control["metric"] == plain["metric"]
    assert control["latency_ms"][2] > 0 and list(result["models"])[-1] == host_latency.CONTROL


def test_bad_options_are_refused_by_name(tmp_path, capsys):
    for argv, words in ((["--batches", "0"], "--batches"), (["--w-bits", "eight"], "--w-bits"),
                        (["--model", str(tmp_path / "missing.onnx")], "no such file")):
        with pytest.raises(SystemExit):
            host_latency.main(["--problem", "digits", *argv])
        assert words in capsys.readouterr().err
