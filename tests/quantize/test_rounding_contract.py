"""The contract every registered rounding method satisfies (one registry line + one module)."""
import numpy as np
import pytest

from qaev.config import ActMode, LayerConfig, QuantConfig, Rounding
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.model.session import make_session, run_batches
from qaev.quantize import Quantizer, export_model
from qaev.quantize.rounding import ROUNDINGS, get_rounding
from qaev.quantize.rounding.base import GridRounding, TableRounding
from qaev.quantize.sizes import weight_bytes
from tests.models import attention_like, conv_mlp, images

_CASES = {"conv_mlp": lambda: (conv_mlp(), {"x": images(24)}),
          "attention_like": lambda: (attention_like(), {"ids": np.random.default_rng(0).integers(0, 50, (24, 6))})}


pytestmark = pytest.mark.usefixtures("own_cache")  # codebooks and learned results stay out of the user's cache


@pytest.fixture(scope="module", params=sorted(_CASES))
def case(request):
    proto, feed = _CASES[request.param]()
    model = load_model(proto)
    data = ArrayDataset(inputs=feed, name=request.param)
    return Quantizer.calibrated(model, data, persist=False), feed


def test_the_config_schema_offers_exactly_the_registered_methods():
    assert [r.value for r in Rounding] == list(ROUNDINGS)


@pytest.mark.parametrize("name", sorted(ROUNDINGS))
def test_every_entry_names_a_module_whose_method_matches_its_traits(name):
    entry, method = ROUNDINGS[name], get_rounding(name)
    assert method.name == name
    assert isinstance(method, GridRounding if entry.on_grid else TableRounding)
    kind = GridRounding if entry.on_grid else TableRounding
    for attr in ("round",) if entry.on_grid else ("weight", "insert", "dequantize", "weight_bytes"):
        assert getattr(type(method), attr) is not getattr(kind, attr), f"{name} must implement {attr}"
    assert entry.widths is None or all(2 <= w <= 8 for w in entry.widths)


def _widths(name):
    return ROUNDINGS[name].widths or (8, 4)


#: Methods learned in PyTorch: minutes per model on a shared 2-core machine, so slow here
#: (tests/learned covers them on one thread).
_LEARNED = {"adaround", "block"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in _LEARNED else n
                                  for n in sorted(ROUNDINGS)])
def test_where_a_method_applies_its_model_runs_close_to_float_and_exports_the_same(case, name):
    q, feed = case
    method = get_rounding(name)
    layers = [layer for layer in q.layers if layer.has_weight and method.problem(layer) is None]
    if not layers:
        pytest.skip(f"{name} applies to no layer of this model")
    reference = run_batches(make_session(q.model.proto), [feed])
    for bits in _widths(name):
        cfg = LayerConfig(w_bits=bits, act=ActMode.FLOAT, rounding=name)
        config = QuantConfig(layers={layer.name: cfg for layer in layers})
        built = run_batches(make_session(q.build(config)), [feed])
        noise = np.sum((built - reference) ** 2) / np.sum(reference ** 2)
        assert noise < (0.05 if bits >= 4 else 0.5), f"{name} at {bits} bits: relative noise {noise:.3g}"
        exported = run_batches(make_session(export_model(q, config)), [feed])
        np.testing.assert_allclose(exported, built, rtol=1e-5, atol=1e-5)
        for layer in layers:
            assert weight_bytes(layer, cfg) < layer.params * 4


@pytest.mark.parametrize("name", sorted(ROUNDINGS))
def test_a_method_needing_data_refuses_to_build_without_it_and_the_others_do_not_need_it(case, name):
    q, _ = case
    method = get_rounding(name)
    layers = [layer for layer in q.layers if layer.has_weight and method.problem(layer) is None]
    if not layers:
        pytest.skip(f"{name} applies to no layer of this model")
    cfg = LayerConfig(w_bits=_widths(name)[0], act=ActMode.FLOAT, rounding=name)
    config = QuantConfig(layers={layers[0].name: cfg})
    assert config.needs_data is ROUNDINGS[name].needs_data
    bare = Quantizer(q.model)
    if ROUNDINGS[name].needs_data:
        with pytest.raises(ConfigError, match="calibration data"):
            bare.build(config)
    else:
        bare.build(config)


@pytest.mark.parametrize("name", sorted(ROUNDINGS))
def test_a_method_that_does_not_apply_to_a_layer_says_so_by_name(case, name):
    q, _ = case
    method = get_rounding(name)
    for layer in q.layers:
        why = method.problem(layer)
        if why is None or not layer.has_weight:
            continue
        cfg = LayerConfig(w_bits=_widths(name)[0], act=ActMode.FLOAT, rounding=name)
        with pytest.raises(ConfigError, match=layer.name):
            q.build(QuantConfig(layers={layer.name: cfg}))
