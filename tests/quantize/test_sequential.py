"""Fitting layers to quantized inputs (``rounding_inputs: quantized``)."""
from dataclasses import replace

import numpy as np
import onnx
import pytest

from qaev.cli.main import main
from qaev.config import ActMode, LayerConfig, QuantConfig, RoundingInputs
from qaev.data import digits_model_path, load_digits_split
from qaev.errors import ConfigError
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, uniform_config
from qaev.quantize.qdq import quantized_weight
from qaev.quantize.sequential import fitted_layers
from qaev.model.session import make_session


def run(capsys, *args):
    code = main([str(a) for a in args])
    capsys.readouterr()
    return code


@pytest.fixture(scope="module")
def digits():
    model = load_model(digits_model_path())
    return model, Quantizer.calibrated(model, load_digits_split("calib"), persist=False)


def _config(quantizer, bits, *, act=ActMode.FLOAT, bias_correction=True, inputs="quantized"):
    cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=bits, act=act, rounding="gptq",
                                                       bias_correction=bias_correction))
    return quantizer.resolve(replace(cfg, rounding_inputs=inputs))


def _outputs(proto, tensors, batches):
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors)
    session = make_session(m)
    runs = [session.run(tensors, b) for b in batches]
    return {t: np.concatenate([r[i] for r in runs]) for i, t in enumerate(tensors)}


def test_each_fitted_layer_keeps_the_float_output_mean_on_the_calibration_data(digits):
    model, q = digits
    config = _config(q, 3)
    layers = fitted_layers(config, q.layers)
    assert [layer.name for layer in layers] == [layer.name for layer in q.layers if layer.has_weight]
    nodes = {n.name: n for n in model.proto.graph.node}
    tensors = [nodes[layer.name].output[0] for layer in layers]  # before any fused activation
    batches = q.inputs.batches()
    ours, ref = _outputs(q.build(config, resolved=True), tensors, batches), _outputs(model.proto, tensors, batches)
    plain = _outputs(q.build(replace(config, rounding_inputs="float"), resolved=True), tensors, batches)
    axes = lambda v: (0,) + tuple(range(2, v.ndim))  # noqa: E731
    for t in tensors:
        scale = np.abs(ref[t]).mean()
        gap = np.abs(ours[t].mean(axis=axes(ours[t])) - ref[t].mean(axis=axes(ref[t]))).max()
        assert gap < 1e-4 * scale, t
    last = tensors[-1]  # with float-input corrections upstream drift reaches the last layer's mean
    assert np.abs(plain[last].mean(axis=0) - ref[last].mean(axis=0)).max() > 1e-3 * np.abs(ref[last]).mean()


def test_the_first_layer_sees_the_model_inputs_so_it_rounds_as_with_float_inputs(digits):
    _, q = digits
    config = _config(q, 3, bias_correction=False)
    first = fitted_layers(config, q.layers)[0]
    fitted = q.fitted(config)[first.name].weight
    alone = quantized_weight(q.model, first, config.layer(first.name), config, inputs=q.inputs)
    assert np.mean(fitted.q == alone.q) > 0.99
    later = fitted_layers(config, q.layers)[-1]
    alone = quantized_weight(q.model, later, config.layer(later.name), config, inputs=q.inputs)
    assert not np.array_equal(q.fitted(config)[later.name].weight.q, alone.q)


@pytest.mark.parametrize("act", [ActMode.FLOAT, ActMode.STATIC])
def test_at_two_bits_fitting_to_quantized_inputs_measures_better_on_held_out_digits(digits, act):
    model, q = digits
    evaluator = Evaluator(model, load_digits_split("test"))
    fitted = evaluator.measure(q.build(_config(q, 2, act=act))).value
    per_layer = evaluator.measure(q.build(_config(q, 2, act=act, inputs="float"))).value
    assert fitted > per_layer


def test_the_setting_is_written_only_when_it_is_not_the_default_and_read_back(digits):
    _, q = digits
    config = _config(q, 4)
    data = config.to_dict()
    assert (data["rounding_inputs"] == "quantized"
            and "rounding_inputs" not in replace(config, rounding_inputs="float").to_dict())
    assert QuantConfig.from_dict(data).rounding_inputs is RoundingInputs.QUANTIZED
    assert config.key() != replace(config, rounding_inputs="float").key()
    nearest = replace(uniform_config(q.layers, LayerConfig(w_bits=4)), rounding_inputs="quantized")
    assert nearest.needs_data and not replace(nearest, rounding_inputs="float").needs_data
    with pytest.raises(ConfigError, match="rounding_inputs: 'both' is not one of float, quantized"):
        QuantConfig.from_dict({**data, "rounding_inputs": "both"})


def test_without_calibration_data_the_error_names_the_setting(digits):
    model, q = digits
    bare = Quantizer(model, layers=q.layers, stats=q.stats)
    with pytest.raises(ConfigError, match="rounding_inputs: .*calibration data"):
        bare.build(_config(q, 4))


def test_quantize_and_apply_rebuild_the_same_fitted_model(tmp_path, capsys):
    out, cfg = tmp_path / "seq.onnx", tmp_path / "seq.yaml"
    assert run(capsys, "quantize", "--w-bits", "3", "--a-bits", "float", "--per-channel", "--rounding", "gptq",
               "--bias-correction", "--rounding-inputs", "quantized", "--no-eval", "-o", out,
               "--save-config", cfg) == 0
    assert "rounding_inputs: quantized" in cfg.read_text()
    rebuilt = tmp_path / "again.onnx"
    assert run(capsys, "apply", cfg, "--problem", "digits", "-o", rebuilt) == 0
    assert rebuilt.read_bytes() == out.read_bytes()


def test_a_config_without_weight_layers_fits_nothing(digits):
    _, q = digits
    assert q.fitted(q.resolve(QuantConfig(rounding_inputs="quantized"))) == {}
