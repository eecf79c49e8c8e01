"""GPTQ-style rounding, layer-input statistics and bias correction."""
import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig, Rounding, ScaleRule
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.model.layers import LayerInfo
from qaev.quantize import Quantizer, uniform_config
from qaev.quantize.bias_correction import output_correction
from qaev.quantize.layer_inputs import InputStats, layer_rows
from qaev.quantize.rounding.gptq import gptq_round
from qaev.quantize.rounding.groups import reconstruction_error, to_groups
from qaev.quantize.weights import quantize_weight, signed_limits
from qaev.model.session import make_session, run_batches
from qaev.search.space import SearchSpace
from tests.models import attention_like, conv_mlp, images

CONVS = {  # name: (weight shape, attributes, input shape)
    "dense_pad": ((8, 4, 3, 3), {"pads": [1, 1, 1, 1]}, (3, 4, 9, 9)),
    "strided_dilated": ((6, 4, 3, 3), {"strides": [2, 2], "dilations": [2, 1], "pads": [0, 1, 2, 1]}, (3, 4, 11, 10)),
    "depthwise": ((8, 1, 3, 3), {"group": 8, "strides": [2, 2], "pads": [1, 1, 1, 1]}, (3, 8, 10, 10)),
    "grouped_same": ((8, 2, 5, 5), {"group": 2, "auto_pad": "SAME_UPPER", "strides": [2, 2]}, (2, 4, 9, 9)),
}


def _conv(name):
    shape, attrs, x_shape = CONVS[name]
    rng = np.random.default_rng(len(name))
    w = rng.normal(size=shape).astype(np.float32)
    x = np.maximum(rng.normal(size=x_shape), 0).astype(np.float32) + rng.normal(size=(1, x_shape[1], 1, 1)).astype(
        np.float32)
    node = h.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)
    layer = LayerInfo("conv", "Conv", "w", shape, 0, None, ("x",), "y", None, w.size,
                      depthwise=attrs.get("group", 1) == shape[0])
    return w, x, node, layer


def _stats(rows):
    rows = rows.astype(np.float64)
    return InputStats(hessian=np.swapaxes(rows, 1, 2) @ rows / rows.shape[1], mean=rows.mean(axis=1),
                      rows=rows.shape[1])


@pytest.mark.parametrize("name", list(CONVS))
def test_im2col_matches_the_runtime_convolution(name):
    w, x, node, layer = _conv(name)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", T.FLOAT, list(x.shape))],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], [nh.from_array(w, "w")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    ref = run_batches(make_session(model), [{"x": x}])
    rows = layer_rows(x, layer, node)  # (G, N*P, n)
    out = rows @ np.swapaxes(to_groups(w, layer, rows.shape[0]), 1, 2)  # (G, N*P, Cout/G)
    n, cout = x.shape[0], w.shape[0]
    got = out.reshape(rows.shape[0], n, -1, cout // rows.shape[0]).transpose(1, 0, 3, 2).reshape(n, cout, -1)
    np.testing.assert_allclose(got, ref.reshape(n, cout, -1), rtol=1e-4, atol=1e-4)


def _layer_errors(w, layer, rows, *, bits, granularity, symmetric=True):
    stats = _stats(rows)
    near = quantize_weight(w, bits=bits, granularity=granularity, symmetric=symmetric, scale_rule=ScaleRule.FLOAT,
                           channel_axis=layer.channel_axis, reduce_axis=layer.reduce_axis)
    gq = gptq_round(w, near, stats.hessian, layer=layer, symmetric=symmetric)
    g = stats.groups
    out_err = lambda q: float(np.sum(reconstruction_error(to_groups(w - q.dequantize(), layer, g), stats.hessian)))  # noqa: E731
    return near, gq, out_err(near), out_err(gq)


@pytest.mark.parametrize("name", list(CONVS))
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_gptq_never_reconstructs_conv_outputs_worse_than_nearest(name, bits):
    w, x, node, layer = _conv(name)
    near, gq, e_near, e_gptq = _layer_errors(w, layer, layer_rows(x, layer, node), bits=bits,
                                             granularity=Granularity.PER_CHANNEL)
    assert e_gptq <= e_near * (1 + 1e-9)
    if bits <= 3 and not layer.depthwise:
        assert e_gptq < 0.8 * e_near  # and helps where there is room


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize(("bits", "granularity", "symmetric"), [
    (2, Granularity.PER_CHANNEL, True), (3, Granularity.BLOCK32, False), (4, Granularity.PER_TENSOR, True),
    (4, Granularity.BLOCK64, True), (8, Granularity.PER_CHANNEL, False)])
def test_gptq_on_gemm_is_on_the_same_grid_and_never_worse(trans_b, bits, granularity, symmetric):
    rng = np.random.default_rng(bits + trans_b)
    k, n = 96, 24
    x = (rng.normal(size=(400, 8)) @ rng.normal(size=(8, k)) + rng.normal(size=(400, k)) * 0.3).astype(np.float32)
    w = rng.normal(size=(n, k) if trans_b else (k, n)).astype(np.float32)
    layer = LayerInfo("fc", "Gemm", "w", w.shape, 0 if trans_b else 1, 1 if trans_b else 0, ("x",), "y", None, w.size)
    near, gq, e_near, e_gptq = _layer_errors(w, layer, x[None], bits=bits, granularity=granularity,
                                             symmetric=symmetric)
    assert e_gptq <= e_near * (1 + 1e-9)
    if bits <= 4:
        assert e_gptq < 0.7 * e_near  # correlated inputs: second-order rounding pays off
    lo, hi = signed_limits(bits, symmetric=symmetric)
    assert gq.q.dtype == near.q.dtype and gq.q.shape == w.shape
    assert gq.q.min() >= lo and gq.q.max() <= hi
    assert np.array_equal(gq.scale, near.scale) and np.array_equal(gq.zero_point, near.zero_point)
    assert (gq.axis, gq.block_size, gq.bits) == (near.axis, near.block_size, near.bits)
    assert np.any(gq.q != near.q)


def test_bias_correction_removes_the_mean_output_shift():
    w, x, node, layer = _conv("strided_dilated")
    rows = layer_rows(x, layer, node)
    stats = _stats(rows)
    qw = quantize_weight(w, bits=2, granularity=Granularity.PER_CHANNEL, symmetric=True, scale_rule=ScaleRule.FLOAT,
                         channel_axis=0, reduce_axis=None)
    corr = output_correction(w, qw, stats, layer=layer)
    shift = (rows[0] @ (qw.dequantize() - w).reshape(w.shape[0], -1).T).mean(axis=0)  # per output channel
    assert np.abs(shift).max() > 1e-2
    np.testing.assert_allclose(shift + corr, 0.0, atol=1e-4)


@pytest.fixture(scope="module")
def quantizer(tmp_path_factory):
    import os

    old = os.environ.get("QAEV_CACHE")
    os.environ["QAEV_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        yield Quantizer.calibrated(load_model(conv_mlp()), ArrayDataset(inputs={"x": images(64)}, name="rand"))
    finally:
        if old is None:
            os.environ.pop("QAEV_CACHE")
        else:
            os.environ["QAEV_CACHE"] = old


def _mean_error(proto, ref_proto, x):
    return np.abs((run_batches(make_session(proto), [{"x": x}]) - run_batches(make_session(ref_proto), [{"x": x}]))
                  .mean(axis=0))


@pytest.mark.parametrize("act", [ActMode.FLOAT, ActMode.STATIC])
def test_bias_correction_in_the_graph_reduces_the_mean_output_error(quantizer, act):
    x = images(64)  # the calibration data
    for cfg_bits in (2, 3):
        plain = uniform_config(quantizer.layers, LayerConfig(w_bits=cfg_bits, act=act))
        fixed = uniform_config(quantizer.layers, LayerConfig(w_bits=cfg_bits, act=act, bias_correction=True))
        before = _mean_error(quantizer.build(plain), quantizer.model.proto, x).mean()
        after = _mean_error(quantizer.build(fixed), quantizer.model.proto, x).mean()
        assert after < before


def _fc1_built(quantizer, **extra):
    return quantizer.build(QuantConfig(layers={"fc1": LayerConfig(w_bits=2, act=ActMode.FLOAT, **extra)}))


def test_bias_correction_of_a_matmul_folds_into_the_bias_add_after_it(quantizer):
    proto, plain = _fc1_built(quantizer, bias_correction=True), _fc1_built(quantizer)
    assert len(proto.graph.node) == len(plain.graph.node)  # no Add of its own
    add = next(n for n in proto.graph.node if n.name == "fc1_bias")
    assert add.input[1] != "b2" and "b2" not in {i.name for i in proto.graph.initializer}
    x = images(64)
    assert _mean_error(proto, quantizer.model.proto, x).mean() < _mean_error(plain, quantizer.model.proto, x).mean()


def _without_fc1_bias(*, shared: bool = False):
    """conv_mlp with fc1's bias Add dropped, or (``shared``) with its bias vector read by a
    second Add as well."""
    proto = conv_mlp()
    nodes = list(proto.graph.node)
    add = next(n for n in nodes if n.name == "fc1_bias")
    if shared:
        extra = h.make_node("Add", [add.output[0], "b2"], ["a2_twice"], name="again")
        nodes.insert(nodes.index(add) + 1, extra)
        for n in nodes[nodes.index(extra) + 1:]:
            n.input[:] = ["a2_twice" if i == add.output[0] else i for i in n.input]
    else:
        nodes.remove(add)
        for n in nodes:
            n.input[:] = [add.input[0] if i == add.output[0] else i for i in n.input]
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)
    return proto


@pytest.mark.parametrize("shared", [False, True], ids=["no bias", "shared bias vector"])
def test_bias_correction_adds_an_add_after_a_matmul_with_no_bias_of_its_own(shared):
    model = load_model(_without_fc1_bias(shared=shared))
    quantizer = Quantizer.calibrated(model, ArrayDataset(inputs={"x": images(64)}, name="rand"))
    proto = _fc1_built(quantizer, bias_correction=True)
    assert any(n.name == "fc1.BiasCorrection" for n in proto.graph.node)
    x = images(64)
    assert _mean_error(proto, model.proto, x).mean() < _mean_error(_fc1_built(quantizer), model.proto, x).mean()


def test_gptq_config_rebuilds_identically_from_the_persisted_statistics(quantizer):
    cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=3, rounding="gptq", bias_correction=True))
    first = quantizer.build(cfg).SerializeToString()
    again = Quantizer.calibrated(quantizer.model, ArrayDataset(inputs={"x": images(64)}, name="rand"))
    assert again.inputs is not None and again.inputs._stats is None
    assert again.build(cfg).SerializeToString() == first
    assert again.inputs.path is not None and again.inputs.path.is_file()  # loaded, not recomputed
    near = quantizer.build(uniform_config(quantizer.layers, LayerConfig(w_bits=3))).SerializeToString()
    assert near != first


def test_gptq_needs_calibration_data_and_a_supported_layer(quantizer):
    cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=4, rounding="gptq"))
    with pytest.raises(ConfigError, match="calibration data"):
        Quantizer(quantizer.model, layers=quantizer.layers).build(cfg.with_ranges(quantizer.resolve(cfg).ranges))
    lookup = Quantizer(load_model(attention_like()))
    bad = QuantConfig(layers={"embed": LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="gptq")})
    with pytest.raises(ConfigError, match="gptq"):
        lookup.build(bad)
    fitted = uniform_config(lookup.layers, LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="gptq"))
    assert fitted.layers["embed"].rounding is Rounding.NEAREST and fitted.layers["proj"].rounding is Rounding.GPTQ


def test_default_genes_keep_old_files_and_hashes():
    old = {"w_bits": 4, "granularity": "per_channel", "symmetric": True, "act": "static", "a_bits": 8}
    cfg = LayerConfig.from_dict(old)
    assert cfg.to_dict() == old and cfg.rounding is Rounding.NEAREST and cfg.bias_correction is False
    new = LayerConfig.from_dict({**old, "rounding": "gptq", "bias_correction": True})
    assert new.to_dict() == {**old, "rounding": "gptq", "bias_correction": True}
    keys = {QuantConfig(layers={"a": c}).key()
            for c in (cfg, new, LayerConfig.from_dict({**old, "rounding": "nearest"}))}
    assert len(keys) == 2
    assert LayerConfig(w_bits=16, rounding="gptq", bias_correction=True).effective() == LayerConfig(w_bits=16)
    with pytest.raises(ConfigError, match="rounding"):
        LayerConfig(rounding="stochastic")  # not a registered method


def test_space_searches_rounding_and_bias_correction(quantizer):
    space = SearchSpace(layers=quantizer.layers, roundings=("nearest", "gptq"), bias_corrections=(False, True))
    n = len(space.searchable)
    genome = space.genome
    assert space.n_var == genome.per_layer * n + 2
    assert list(space.upper()[genome.column("rounding")]) == [1] * n
    row = space.encode_uniform(w_bits=4, act="a8")
    row[genome.column("rounding")] = 1
    row[genome.column("bias_correction")] = 1
    cfg = space.decode(row)
    assert all(c.rounding is Rounding.GPTQ for c in cfg.layers.values())
    # a MatMul with static activations cannot take bias correction (ORT's fused kernel rejects it)
    assert all(c.bias_correction for name, c in cfg.layers.items() if name != "fc1")
    assert not cfg.layers["fc1"].bias_correction
    assert space.encode_layer(cfg.layers["conv1"], np.zeros_like(row), 0)[4:6].tolist() == [1, 1]
    default = SearchSpace(layers=quantizer.layers)
    assert default.upper()[4:6].tolist() == [0, 0]
    assert all(c.rounding is Rounding.NEAREST for c in default.decode(default.encode_uniform(w_bits=4, act="a8"))
               .layers.values())


def test_layer_input_statistics_leave_padded_tokens_out():
    """Rows of token positions whose attention_mask is 0 do not enter the Hessian or mean."""
    from qaev.quantize.layer_inputs import collect_layer_inputs
    from qaev.model.layers import find_layers

    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    graph = h.make_graph(
        [h.make_node("Cast", ["attention_mask"], ["m"], to=T.FLOAT),
         h.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
         h.make_node("Add", ["x", "m3"], ["xm"]),  # the mask reaches the MatMul input
         h.make_node("MatMul", ["xm", "w"], ["y"], name="proj")],
        "masked", [h.make_tensor_value_info("x", T.FLOAT, [None, None, 4]),
                   h.make_tensor_value_info("attention_mask", T.INT64, [None, None])],
        [h.make_tensor_value_info("y", T.FLOAT, [None, None, 3])],
        initializer=[nh.from_array(w, "w"), nh.from_array(np.array([-1], np.int64), "axes")])
    model = load_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int64)
    stats = collect_layer_inputs(model, find_layers(model), [{"x": x, "attention_mask": mask}])["proj"]
    rows = (x + mask[..., None])[mask.astype(bool)].astype(np.float64)
    assert stats.rows == 8
    np.testing.assert_allclose(stats.mean[0], rows.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats.hessian[0], rows.T @ rows / len(rows), rtol=1e-6)


def test_layer_input_statistics_use_every_calibration_sample_by_default():
    """A second-order rounding needs many input rows: the default takes all of a 600-sample
    calibration set (the old cap of 256 left most of it out), and ``max_samples`` still caps."""
    from qaev.quantize.layer_inputs import LayerInputs

    model = load_model(attention_like())
    rng = np.random.default_rng(1)
    data = ArrayDataset(inputs={"ids": rng.integers(0, 50, size=(600, 4))}, name="many")
    layer = next(layer for layer in Quantizer(model).layers if layer.op_type == "MatMul" and layer.has_weight)
    assert LayerInputs(model, [layer], data).get(layer).rows == 600 * 4
    assert LayerInputs(model, [layer], data, max_samples=100).get(layer).rows == 100 * 4
