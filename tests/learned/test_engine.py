"""Learned rounding in the engine: ``adaround`` and ``block`` behind the rounding registry,
on ``qaev quantize`` and ``qaev apply``; a config re-applies byte-identically from the same
calibration data."""
import sys
from dataclasses import replace

import numpy as np
import pytest

from qaev.cli.main import main
from qaev.config import ActMode, BlockSettings, Granularity, LayerConfig, QuantConfig, RoundingInputs, ScaleRule
from qaev.data import digits_model_path, load_digits_split
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, uniform_config
from qaev.quantize.learned.reconstruct import ReconstructOptions


def _run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("rounding", ["adaround", "block", "block+scale"])
def test_a_learned_config_reapplies_byte_identically_from_the_same_calibration_data(tmp_path, capsys, monkeypatch,
                                                                                     rounding):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    out, cfg = tmp_path / "q.onnx", tmp_path / "q.yaml"
    scale = ["--block-learn-scale", "--block-mirror"] if rounding == "block+scale" else []
    code, _, err = _run(capsys, "quantize", "--w-bits", "3", "--a-bits", "8", "--per-channel", "--rounding",
                        rounding.split("+")[0], *scale, "--no-eval", "-o", out, "--save-config", cfg)
    assert code == 0, err
    assert ("loss nearest" if rounding == "adaround" else "block 2/2") in err  # progress, as it works
    if rounding != "adaround":  # digits' metric is top-1: the last block is fitted on the softmax's divergence
        assert "output_loss: kl" in cfg.read_text()
        assert ("learn_scale: true" in cfg.read_text()) == bool(scale)
        assert ("mirror: true" in cfg.read_text()) == bool(scale)  # off unless asked for, kept when asked
    rebuilt = tmp_path / "again.onnx"
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "fresh"))  # nothing kept: apply learns again
    code, _, err = _run(capsys, "apply", cfg, "--problem", "digits", "-o", rebuilt)
    assert code == 0 and "read from" not in err
    assert rebuilt.read_bytes() == out.read_bytes()


def test_block_rounding_learns_the_ranges_it_builds_with_and_fits_once(digits):
    _, q = digits
    config = q.resolve(uniform_config(q.layers, LayerConfig(w_bits=4, act=ActMode.STATIC, a_bits=8,
                                                            rounding="block")))
    config = replace(config, block=BlockSettings(iters=40))
    learned_config, fitted = q.learned(config)
    assert set(fitted) == {layer.name for layer in q.layers if layer.has_weight}
    assert learned_config.ranges != config.ranges
    assert q.reconstructed(config) is q.reconstructed(config)
    assert q.build(config, resolved=True).SerializeToString() == q.build(config, resolved=True).SerializeToString()


def test_block_rounding_refuses_weights_fitted_to_quantized_inputs_beside_it(digits):
    _, q = digits
    config = uniform_config(q.layers, LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="block"))
    config = q.resolve(replace(config, rounding_inputs=RoundingInputs.QUANTIZED))
    with pytest.raises(ConfigError, match="rounding_inputs"):
        q.build(config, resolved=True)


@pytest.mark.parametrize("rounding", ["adaround", "block"])
def test_without_torch_quantize_stops_with_one_line_naming_the_extra(tmp_path, capsys, monkeypatch, rounding):
    monkeypatch.setitem(sys.modules, "torch", None)
    code, _, err = _run(capsys, "quantize", "--w-bits", "4", "--a-bits", "float", "--rounding", rounding,
                        "--no-eval", "-o", tmp_path / "q.onnx")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("qaev: error:") and "pip install 'qaev[torch]'" in lines[0]
    assert not (tmp_path / "q.onnx").exists()


def test_adaround_never_reconstructs_a_digits_layer_worse_than_gptq(digits):
    from qaev.quantize.learned.adaround import AdaRoundOptions, adaround
    from qaev.quantize.weights import quantize_weight

    _, q = digits
    for layer in q.layers:
        if not layer.has_weight:
            continue
        w = q.model.weight(layer.weight)
        nearest = quantize_weight(w, bits=3, granularity=Granularity.PER_CHANNEL, symmetric=True,
                                  scale_rule=ScaleRule.FLOAT,
                                  channel_axis=layer.channel_axis, reduce_axis=layer.reduce_axis)
        _, report = adaround(w, nearest, q.inputs.get(layer).hessian, layer=layer, symmetric=True,
                             options=AdaRoundOptions(iters=300))
        assert report.final <= report.gptq * (1 + 1e-9) and np.isfinite(report.final)


def test_a_reconstruction_is_kept_on_disk_and_read_back_by_the_next_quantizer(tmp_path, monkeypatch):
    from qaev.quantize.learned import reconstruct as learning

    monkeypatch.setenv("QAEV_CACHE", str(tmp_path))
    model = load_model(digits_model_path())
    first = Quantizer.calibrated(model, load_digits_split("calib"))
    config = first.resolve(uniform_config(first.layers, LayerConfig(w_bits=4, act=ActMode.STATIC, a_bits=8,
                                                                    rounding="block")))
    config = replace(config, block=BlockSettings(iters=20, seed=1))
    built = first.build(config, resolved=True).SerializeToString()
    assert list(tmp_path.rglob("block-*.npz"))

    def no_learning(*args, **kwargs):
        raise AssertionError("learned again")

    monkeypatch.setattr(learning, "reconstruct", no_learning)
    second = Quantizer.calibrated(model, load_digits_split("calib"))
    assert second.build(config, resolved=True).SerializeToString() == built
    with pytest.raises(AssertionError, match="learned again"):  # another seed: another key
        second.build(replace(config, block=BlockSettings(iters=20, seed=2)), resolved=True)
    other = Quantizer.calibrated(model, load_digits_split("calib"), reconstruction=ReconstructOptions(lr=0.05))
    with pytest.raises(AssertionError, match="learned again"):  # other learning options: another key
        other.build(config, resolved=True)


def test_adaround_results_are_kept_on_disk_and_read_back_by_the_next_quantizer(tmp_path, monkeypatch):
    from qaev.quantize.learned import adaround as learning

    monkeypatch.setenv("QAEV_CACHE", str(tmp_path))
    model = load_model(digits_model_path())
    first = Quantizer.calibrated(model, load_digits_split("calib"))
    config = first.resolve(uniform_config(first.layers, LayerConfig(w_bits=3, act=ActMode.FLOAT, rounding="adaround")))
    built = first.build(config, resolved=True).SerializeToString()
    assert len(list((tmp_path / "adaround").glob("*.npz"))) == sum(layer.has_weight for layer in first.layers)

    def no_learning(*args, **kwargs):
        raise AssertionError("learned again")

    monkeypatch.setattr(learning, "adaround", no_learning)
    second = Quantizer.calibrated(model, load_digits_split("calib"))
    assert second.build(config, resolved=True).SerializeToString() == built
    wider = first.resolve(uniform_config(first.layers, LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="adaround")))
    with pytest.raises(AssertionError, match="learned again"):  # another grid: another key
        second.build(wider, resolved=True)


def test_block_settings_travel_in_the_config_file_and_change_its_key(tmp_path):
    from qaev.config_io import load_config, save_config

    base = QuantConfig(layers={"a": LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="block")})
    tuned = replace(base, block=BlockSettings(iters=150, seed=3))
    assert "block" not in base.to_dict() and tuned.to_dict()["block"] == {"iters": 150, "seed": 3}
    assert load_config(save_config(tuned, tmp_path / "c.yaml")) == tuned and tuned.key() != base.key()
    plain = QuantConfig(layers={"a": LayerConfig(w_bits=4, act=ActMode.FLOAT)})
    assert replace(plain, block=BlockSettings(iters=150)).key() == plain.key()  # no block layer: same model
    with pytest.raises(ConfigError, match="block.iters"):
        QuantConfig.from_dict({"version": 1, "block": {"iters": -1}})
    with pytest.raises(ConfigError, match="unknown key.*'lr'"):
        QuantConfig.from_dict({"version": 1, "block": {"lr": 5}})
    with pytest.raises(ConfigError, match="block.steps: expected a list"):
        QuantConfig.from_dict({"version": 1, "block": {"steps": 5}})
    kl = replace(tuned, block=BlockSettings(iters=150, seed=3, output_loss="kl"))
    assert kl.to_dict()["block"] == {"iters": 150, "seed": 3, "output_loss": "kl"} and kl.key() != tuned.key()
    assert load_config(save_config(kl, tmp_path / "kl.json")) == kl
    with pytest.raises(ConfigError, match="block.output_loss: expected one of mse, kl, got 'ce'"):
        QuantConfig.from_dict({"version": 1, "block": {"output_loss": "ce"}})
    scaled = replace(tuned, block=BlockSettings(iters=150, seed=3, learn_scale=True))
    assert scaled.to_dict()["block"] == {"iters": 150, "seed": 3, "learn_scale": True} and scaled.key() != tuned.key()
    assert load_config(save_config(scaled, tmp_path / "scaled.yaml")) == scaled
    with pytest.raises(ConfigError, match="block.learn_scale: expected true or false, got 'yes'"):
        QuantConfig.from_dict({"version": 1, "block": {"learn_scale": "yes"}})
