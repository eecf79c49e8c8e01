"""ONNX Runtime TensorQuantOverrides: ORT's quantize_static fed qaev's overrides builds the
same model as qaev; configs round-trip through YAML, JSON and the overrides."""
import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

from qaev.cli.main import main
from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig
from qaev.config_io import load_config, save_config
from qaev.data import digits_model_path, load_digits_split
from qaev.errors import ConfigError
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.interop_ort import (from_tensor_quant_overrides, load_overrides, quantize_static_options,
                              to_tensor_quant_overrides)
from qaev.quantize import Quantizer, uniform_config
from qaev.search.build import build_problem
from qaev.search.spec import RunSpec


@pytest.fixture(scope="module")
def setup():
    model = load_model(digits_model_path())
    calib = load_digits_split("calib")
    quantizer = Quantizer.calibrated(model, calib, persist=False)
    return model, calib, quantizer, Evaluator(model, load_digits_split("test"), metric="top1")


class _Reader(CalibrationDataReader):
    def __init__(self, dataset):
        self._it = iter(dataset.batches(batch_size=64))

    def get_next(self):
        return next(self._it, None)


def _eight_bit_points(quantizer):
    """8-bit points: uniform per-channel, and a mix (per-tensor asymmetric, one layer float)."""
    mixed = QuantConfig(layers={"/0/Conv": LayerConfig(w_bits=8), "/2/Conv": LayerConfig(w_bits=8, symmetric=False),
                                "/8/Gemm": LayerConfig(w_bits=8, granularity=Granularity.PER_TENSOR),
                                "/10/Gemm": LayerConfig(w_bits=8)})
    return {"uniform": uniform_config(quantizer.layers, LayerConfig(w_bits=8)), "mixed": mixed}


@pytest.mark.parametrize("name", ["uniform", "mixed"])
def test_quantize_static_with_overrides_matches_qaev(setup, tmp_path, name):
    model, calib, quantizer, evaluator = setup
    config = quantizer.resolve(_eight_bit_points(quantizer)[name])
    ours_model = quantizer.build(config)
    ours = evaluator.measure(ours_model)
    # the JSON file a user gets, read back and handed to ORT with the same calibration data
    overrides = json.loads(json.dumps(to_tensor_quant_overrides(config, quantizer)))
    assert overrides == to_tensor_quant_overrides(config, quantizer)
    options = quantize_static_options(config, quantizer)
    out = tmp_path / "ort.onnx"
    quantize_static(str(digits_model_path()), str(out), _Reader(calib), quant_format=QuantFormat.QDQ, **options)
    theirs = evaluator.measure(onnx.load(str(out)))
    assert abs(ours.value - theirs.value) <= 0.3, (ours.value, theirs.value)
    # stronger than the accuracy: the logits agree
    import onnxruntime as ort

    feed = next(iter(load_digits_split("test").batches(batch_size=128)))
    a = ort.InferenceSession(ours_model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_overrides_round_trip_to_the_same_config(setup):
    _, _, quantizer, _ = setup
    for config in _eight_bit_points(quantizer).values():
        config = quantizer.resolve(config)
        back = from_tensor_quant_overrides(json.loads(json.dumps(to_tensor_quant_overrides(config, quantizer))),
                                           quantizer)
        assert back == config
    pow2 = quantizer.resolve(uniform_config(quantizer.layers, LayerConfig(w_bits=8), scale_rule="pow2"))
    data = to_tensor_quant_overrides(pow2, quantizer)
    assert "scale" in data["0.weight"][0] and len(data["0.weight"]) == 16  # explicit, per channel
    back = from_tensor_quant_overrides(data, quantizer)
    assert back.scale_rule == pow2.scale_rule and dict(back.layers) == dict(pow2.layers)


def test_unexpressible_settings_and_unknown_tensors_are_named(setup):
    _, _, quantizer, _ = setup
    weight_only = uniform_config(quantizer.layers, LayerConfig(w_bits=8, act=ActMode.FLOAT))
    with pytest.raises(ConfigError, match="/0/Conv.*weight-only"):
        to_tensor_quant_overrides(weight_only, quantizer)
    two_bit = uniform_config(quantizer.layers, LayerConfig(w_bits=2))
    with pytest.raises(ConfigError, match="2-bit"):
        to_tensor_quant_overrides(two_bit, quantizer)
    gptq = uniform_config(quantizer.layers, LayerConfig(w_bits=8, rounding="gptq"))
    with pytest.raises(ConfigError, match="/0/Conv: gptq rounding: quantize_static rounds weights to nearest"):
        to_tensor_quant_overrides(gptq, quantizer)
    corrected = uniform_config(quantizer.layers, LayerConfig(w_bits=8, bias_correction=True))
    with pytest.raises(ConfigError, match="/0/Conv: bias correction: .*keeps the float biases"):
        to_tensor_quant_overrides(corrected, quantizer)
    fitted = replace(uniform_config(quantizer.layers, LayerConfig(w_bits=8)), rounding_inputs="quantized")
    with pytest.raises(ConfigError, match="rounding_inputs: .*no TensorQuantOverrides form"):
        to_tensor_quant_overrides(fitted, quantizer)
    with pytest.raises(ConfigError, match="'no_such_tensor' is not in the model"):
        from_tensor_quant_overrides({"no_such_tensor": [{"quant_type": "QUInt8"}]}, quantizer)
    with pytest.raises(ConfigError, match="unknown key.*'colour'"):
        from_tensor_quant_overrides({"0.weight": [{"quant_type": "QInt8", "colour": 1}]}, quantizer)
    with pytest.raises(ConfigError, match="/2/Conv_output_0.*not a weight, input or output"):
        from_tensor_quant_overrides({"/2/Conv_output_0": [{"quant_type": "QUInt8"}]}, quantizer)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_config_files_round_trip(setup, tmp_path, suffix):
    _, _, quantizer, _ = setup
    config = quantizer.resolve(QuantConfig(
        layers={"/0/Conv": LayerConfig(w_bits=4, act=ActMode.FLOAT), "/2/Conv": LayerConfig(w_bits=8, a_bits=16),
                "/8/Gemm": LayerConfig(w_bits=3, granularity=Granularity.BLOCK32, symmetric=False,
                                       act=ActMode.FLOAT)},
        calibration="percentile", scale_rule="pow2"))
    path = save_config(config, tmp_path / f"c{suffix}")
    assert load_config(path) == config and load_config(path).key() == config.key()


def test_export_cli_writes_overrides(setup, tmp_path, capsys):
    _, _, quantizer, _ = setup
    run = tmp_path / "run"
    assert main(["search", "--pop", "6", "--generations", "1", "--acts", "a8", "--w-bits", "8",
                 "--roundings", "nearest", "--bias-correction", "off", "--symmetry", "symmetric", "--weight-range",
                 "minmax", "--out", str(run), "--quiet"]) == 0
    doc = json.loads((run / "front.json").read_text())
    point = doc["points"][0]["id"]
    out = tmp_path / "o.json"
    assert main(["export", str(run), "--point", point, "--format", "ort-overrides", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    config = load_config(run / doc["points"][0]["config"])
    assert from_tensor_quant_overrides(data, Quantizer(quantizer.model)) == config
    assert "load_overrides" in capsys.readouterr().out
    # the file as written, loaded for ORT, quantizes to a model measuring what the front says
    spec = RunSpec.from_dict(json.loads((run / "settings.json").read_text())["spec"])
    problem = build_problem(spec)
    built = tmp_path / "ort.onnx"
    quantize_static(str(digits_model_path()), str(built), _Reader(problem.parts.calib), quant_format=QuantFormat.QDQ,
                    extra_options={"TensorQuantOverrides": load_overrides(out)})
    measured = problem.evaluator.measure(onnx.load(str(built))).value
    assert abs(measured - doc["points"][0]["metric"]) <= 0.3, (measured, doc["points"][0]["metric"])


def test_load_overrides_names_a_file_that_is_not_overrides(tmp_path):
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"0.weight": {"quant_type": "QInt8"}}))
    with pytest.raises(ConfigError, match="o.json: not TensorQuantOverrides"):
        load_overrides(path)
    with pytest.raises(ConfigError, match="no such TensorQuantOverrides file"):
        load_overrides(tmp_path / "missing.json")
