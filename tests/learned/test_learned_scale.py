"""Block reconstruction with learned weight scales (``ReconstructOptions(learn_scale=True)``)."""
import numpy as np
import pytest
from onnx import numpy_helper as nh

from qaev.config import ActMode, LayerConfig
from qaev.data import load_digits_split
from qaev.quantize import build_qdq, uniform_config
from qaev.quantize.learned.reconstruct import ReconstructOptions, reconstruct
from tests.learned.conftest import block_config


def _learn(digits, config, **options):
    model, q = digits
    return reconstruct(model, q.layers, config, q.inputs.batches(), inputs=q.inputs,
                       options=ReconstructOptions(iters=150, batch_size=16, seed=0, **options))


@pytest.mark.parametrize("act", [ActMode.FLOAT, ActMode.STATIC])
def test_learned_scales_move_the_step_sizes_and_keep_the_integers_on_their_grid(digits, act):
    config = block_config(digits[1], w_bits=4, act=act, a_bits=8)
    plain, scaled = _learn(digits, config), _learn(digits, config, learn_scale=True)
    assert all(b.after <= b.before for b in scaled.blocks)
    for name, fit in scaled.fitted.items():
        grid = plain.fitted[name].weight
        assert fit.weight.scale.shape == grid.scale.shape and fit.weight.scale.dtype == np.float32
        assert not np.array_equal(fit.weight.scale, grid.scale)  # the gains moved
        assert np.abs(np.log(fit.weight.scale / grid.scale)).max() < 0.5  # ... near the calibrated grid
        assert fit.weight.q.dtype == grid.q.dtype and np.abs(fit.weight.q).max() <= 7


def test_learned_scales_are_deterministic_and_reach_the_qdq_model(digits):
    model, q = digits
    config = block_config(q, w_bits=4, act=ActMode.FLOAT)
    first, again = _learn(digits, config, learn_scale=True), _learn(digits, config, learn_scale=True)
    for name in first.fitted:
        assert first.fitted[name].weight.scale.tobytes() == again.fitted[name].weight.scale.tobytes()
    built = build_qdq(model, q.layers, first.config(config), fitted=first.fitted)
    stored = {t.name: nh.to_array(t) for t in built.graph.initializer}
    for name, fit in first.fitted.items():
        np.testing.assert_array_equal(stored[f"{name}.w.scale"].reshape(-1), fit.weight.scale.reshape(-1))


def test_an_export_with_learned_scales_computes_what_its_evaluation_graph_computes(digits):
    from dataclasses import replace

    from qaev.config import BlockSettings
    from qaev.model.session import make_session, run_batches
    from qaev.quantize.export import export_model

    model, q = digits
    for act in (ActMode.FLOAT, ActMode.STATIC):  # bit planes beside float activations, INT4 beside static ones
        config = replace(block_config(q, w_bits=3, act=act, a_bits=8), block=BlockSettings(iters=30, learn_scale=True))
        feeds = list(load_digits_split("test").batches(batch_size=64))[:2]
        np.testing.assert_array_equal(run_batches(make_session(export_model(q, config)), feeds),
                                      run_batches(make_session(q.build(config, resolved=True)), feeds))


def test_the_gains_rate_changes_no_key_while_no_gain_is_learned():
    from qaev.quantize.learned.store import result_key

    def key(options):
        return result_key(model_sha256="m", data_key="d", config_key="c", options=options)

    plain = key(ReconstructOptions())
    assert key(ReconstructOptions(scale_lr=0.5)) == plain  # results learned before the option existed keep their keys
    assert key(ReconstructOptions(learn_scale=True)) != plain
    assert key(ReconstructOptions(learn_scale=True, scale_lr=0.5)) != key(ReconstructOptions(learn_scale=True))


def test_power_of_two_scales_stay_powers_of_two(digits):
    from dataclasses import replace

    from qaev.config import ScaleRule

    q = digits[1]
    config = q.resolve(replace(uniform_config(q.layers, LayerConfig(rounding="block", w_bits=4, act=ActMode.FLOAT)),
                               scale_rule=ScaleRule.POW2))
    for fit in _learn(digits, config, learn_scale=True).fitted.values():
        exponent = np.log2(fit.weight.scale)
        np.testing.assert_array_equal(exponent, np.round(exponent))  # no gain learned on a power-of-two grid
