"""benchmarks/paired_models.py: the same model twice pairs to nothing, a coarser one to a loss."""
import pytest

from qaev.config import LayerConfig
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, uniform_config
from tests.paths import load_benchmark

bench = load_benchmark("paired_models")


def test_each_model_after_the_first_is_paired_with_it(tmp_path, capsys):
    parts = problem_parts("digits")
    quantizer = Quantizer.calibrated(parts.model, parts.calib, persist=False)
    paths = []
    for bits in (8, 2):
        path = tmp_path / f"w{bits}.onnx"
        config = uniform_config(quantizer.layers, LayerConfig(w_bits=bits, act="float", granularity="per_tensor"))
        path.write_bytes(quantizer.build(config).SerializeToString())
        paths.append(str(path))
    found = bench.rows("digits", [paths[0], paths[0], paths[1]])
    assert "gap" not in found[0] and found[1]["gap"] == 0 and found[1]["kl_gap"] == 0
    assert found[2]["gap"] == pytest.approx(found[2]["drop"] - found[0]["drop"]) and found[2]["kl"] > found[0]["kl"]
    bench.main(["--problem", "digits", paths[0], paths[1]])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[1].startswith(f"{paths[1]}: drop") and f"minus {paths[0]}:" in printed[1]
