import numpy as np
import onnx
import pytest

from qaev.config import ActMode, CalibMethod, Granularity, LayerConfig, QuantConfig, ScaleRule, WeightRange
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.weights import quantize_weight
from qaev.model.session import make_session, run_batches
from tests.models import conv_mlp, images


@pytest.fixture(scope="module")
def quantizer():
    return Quantizer.calibrated(load_model(conv_mlp()), ArrayDataset(inputs={"x": images(64)}, name="rand"),
                                persist=False)


def _out(proto, x=None):
    return run_batches(make_session(proto), [{"x": images(32, seed=7) if x is None else x}])


def _rel_err(q, ref):
    return float(np.linalg.norm(q - ref) / np.linalg.norm(ref))


def _ops(proto):
    return [n.op_type for n in proto.graph.node]


def test_w8a8_qdq_counts_and_closeness(quantizer):
    cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=8))
    proto = quantizer.build(cfg)
    ops = _ops(proto)
    # 3 weights + 2 int32 biases (conv, gemm) dequantized; activations x, r1, f, m2, r2, y quantized
    assert ops.count("QuantizeLinear") == 6
    assert ops.count("DequantizeLinear") == 3 + 2 + 6
    ref = _out(quantizer.model.proto)
    assert 0 < _rel_err(_out(proto), ref) < 0.06  # random weights and inputs: six 8-bit grids in a row


def test_w8a8_runs_fused_integer_kernels(quantizer, tmp_path):
    proto = quantizer.build(uniform_config(quantizer.layers, LayerConfig(w_bits=8)))
    optimized = tmp_path / "opt.onnx"
    make_session(proto, optimized_path=str(optimized))
    ops = _ops(onnx.load(str(optimized)))
    assert "QLinearConv" in ops and "QLinearMatMul" in ops


def test_fewer_weight_bits_give_larger_error(quantizer):
    ref = _out(quantizer.model.proto)
    errs = [_rel_err(_out(quantizer.build(uniform_config(quantizer.layers, LayerConfig(w_bits=b, act="float")))), ref)
            for b in (16, 8, 4, 2)]
    assert errs == sorted(errs) and errs[0] < 1e-3 and errs[-1] > 0.1


def test_weight_only_has_no_activation_qdq(quantizer):
    proto = quantizer.build(uniform_config(quantizer.layers, LayerConfig(w_bits=4, act=ActMode.FLOAT)))
    assert "QuantizeLinear" not in _ops(proto) and "DequantizeLinear" not in _ops(proto)
    assert sum(n.name.endswith(".w.CastQ") for n in proto.graph.node) == 3  # folded when the session loads


def test_dynamic_int8_uses_matmulinteger(quantizer):
    proto = quantizer.build(uniform_config(quantizer.layers, LayerConfig(w_bits=8, act=ActMode.DYNAMIC)))
    ops = _ops(proto)
    assert ops.count("MatMulInteger") == 2 and ops.count("DynamicQuantizeLinear") == 2  # fc1 + fc2; conv weight-only
    assert _rel_err(_out(proto), _out(quantizer.model.proto)) < 0.03


def test_block_wise_weights(quantizer):
    cfg = QuantConfig(layers={"fc1": LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.BLOCK32)})
    proto = quantizer.build(cfg)
    scales = {i.name: list(i.dims) for i in proto.graph.initializer if i.name.endswith(".scale")}
    assert scales == {"fc1.w.scale": [288 // 32, 32]}  # one scale per block of 32 along the reduced axis
    ref = _out(quantizer.model.proto)
    per_channel = quantizer.build(QuantConfig(layers={"fc1": LayerConfig(w_bits=4, act=ActMode.FLOAT)}))
    assert _rel_err(_out(proto), ref) < _rel_err(_out(per_channel), ref)


def test_block_wise_on_a_conv_is_rejected(quantizer):
    with pytest.raises(ConfigError, match="layers.conv1"):
        quantizer.build(QuantConfig(layers={"conv1": LayerConfig(granularity=Granularity.BLOCK64)}))


def test_four_bit_activations_stay_on_a_16_level_grid(quantizer):
    cfg = QuantConfig(layers={"conv1": LayerConfig(w_bits=8, a_bits=4)})
    proto = quantizer.build(cfg)
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    dq_out = next(n.output[0] for n in probe.graph.node
                  if n.name.startswith("act.r1") and n.op_type == "DequantizeLinear")
    probe.graph.output.append(onnx.helper.make_tensor_value_info(dq_out, onnx.TensorProto.FLOAT, None))
    values = make_session(probe).run([dq_out], {"x": images(32, seed=9) * 3})[0]
    assert len(np.unique(values)) <= 16


def test_pow2_scales_are_powers_of_two(quantizer):
    cfg = uniform_config(quantizer.layers, LayerConfig(w_bits=8), scale_rule=ScaleRule.POW2)
    proto = quantizer.build(cfg)
    scales = [onnx.numpy_helper.to_array(i) for i in proto.graph.initializer if i.name.endswith(".scale")]
    logs = np.log2(np.concatenate([s.ravel() for s in scales]))
    assert np.allclose(logs, np.round(logs))


def test_missing_range_without_statistics_is_a_config_error(quantizer):
    bare = Quantizer(quantizer.model, layers=quantizer.layers)
    with pytest.raises(ConfigError, match="no calibrated range"):
        bare.build(uniform_config(bare.layers, LayerConfig()))


def test_resolved_config_rebuilds_without_data(quantizer):
    cfg = quantizer.resolve(uniform_config(quantizer.layers, LayerConfig(w_bits=4), calibration=CalibMethod.PERCENTILE))
    bare = Quantizer(quantizer.model, layers=quantizer.layers)
    np.testing.assert_array_equal(_out(bare.build(cfg)), _out(quantizer.build(cfg)))


@pytest.mark.parametrize("layer_cfg", [
    LayerConfig(w_bits=4),
    LayerConfig(w_bits=2, symmetric=False),
    LayerConfig(w_bits=3, act=ActMode.FLOAT),
    LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.BLOCK32, symmetric=False),
    LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.BLOCK64),
    LayerConfig(w_bits=2, act=ActMode.FLOAT),
    LayerConfig(w_bits=2, act=ActMode.FLOAT, granularity=Granularity.BLOCK32),
    LayerConfig(w_bits=2, act=ActMode.FLOAT, granularity=Granularity.BLOCK32, symmetric=False),
    LayerConfig(w_bits=8, act=ActMode.DYNAMIC),
    LayerConfig(w_bits=4, act=ActMode.DYNAMIC),
])
def test_export_matches_evaluation_model(quantizer, layer_cfg):
    cfg = uniform_config(quantizer.layers, layer_cfg)
    exported = export_model(quantizer, cfg)
    weight_only = layer_cfg.act is ActMode.FLOAT
    if weight_only:  # folded on both sides: the same float layers on the same weights
        np.testing.assert_array_equal(_out(exported), _out(quantizer.build(cfg)))
    else:
        np.testing.assert_allclose(_out(exported), _out(quantizer.build(cfg)), rtol=1e-5, atol=1e-5)
    types = {i.data_type for i in exported.graph.initializer}
    planes = layer_cfg.w_bits == 3 and weight_only  # bit planes: tests/quantize/test_bitplanes.py
    if layer_cfg.w_bits <= 4 and layer_cfg.act is not ActMode.DYNAMIC and not planes:
        weight_only_2bit = layer_cfg.w_bits <= 2 and weight_only
        assert (onnx.TensorProto.INT2 if weight_only_2bit else onnx.TensorProto.INT4) in types
    assert "MatMulNBits" not in _ops(exported)  # weight-only layers run folded, as evaluated


def test_two_bit_embeddings_and_matmuls_export_natively_and_exactly():
    from tests.models import attention_like

    model = load_model(attention_like())
    ids = np.random.default_rng(0).integers(0, 50, (16, 6)).astype(np.int64)
    q = Quantizer.calibrated(model, ArrayDataset(inputs={"ids": ids}, name="ids"), persist=False)
    cfg = uniform_config(q.layers, LayerConfig(w_bits=2, act=ActMode.FLOAT, granularity=Granularity.BLOCK32))
    exported = export_model(q, cfg)
    feed = [{"ids": ids[:4]}]
    np.testing.assert_array_equal(run_batches(make_session(exported), feed),
                                  run_batches(make_session(q.build(cfg)), feed))
    inits = {i.name: i for i in exported.graph.initializer}
    table = inits["embed.w.packed"]  # four 2-bit values a byte
    assert table.data_type == onnx.TensorProto.UINT8 and list(table.dims) == [50, 16]
    assert inits["proj.w.q"].data_type == onnx.TensorProto.INT2 and list(inits["proj.w.q"].dims) == [64, 64]
    four = export_model(q, uniform_config(q.layers, LayerConfig(w_bits=4, act=ActMode.FLOAT,
                                                                granularity=Granularity.BLOCK32)))
    assert len(exported.SerializeToString()) < len(four.SerializeToString())


def test_four_bit_export_is_smaller_than_eight_bit(quantizer):
    size = {b: len(export_model(quantizer, uniform_config(quantizer.layers, LayerConfig(w_bits=b))).SerializeToString())
            for b in (4, 8)}
    assert size[4] <= 0.6 * size[8] + 2000  # tiny model: fixed graph overhead is ~2 kB


@pytest.mark.parametrize("method", [CalibMethod.ENTROPY, CalibMethod.PERCENTILE, CalibMethod.MSE])
def test_model_outputs_keep_their_full_range(quantizer, method):
    cfg = quantizer.resolve(uniform_config(quantizer.layers, LayerConfig(w_bits=8), calibration=method))
    assert cfg.ranges["y"] == quantizer.stats.range("y", CalibMethod.MINMAX, 8)
    inner = [t for t in cfg.ranges if t != "y"]
    assert any(cfg.ranges[t] != quantizer.stats.range(t, CalibMethod.MINMAX, 8) for t in inner)


@pytest.mark.parametrize("granularity", [Granularity.PER_TENSOR, Granularity.PER_CHANNEL, Granularity.BLOCK32])
@pytest.mark.parametrize("symmetric", [True, False])
def test_mse_weight_range_lowers_each_groups_rounding_error(granularity, symmetric):
    """``weight_range=mse`` shrinks a group's range only where that lowers its squared
    rounding error; at 2 and 3 bits on heavy-tailed weights it lowers the total clearly."""
    from qaev.quantize.weights import _group_sum

    rng = np.random.default_rng(0)
    w = rng.standard_t(3, size=(16, 96)).astype(np.float32)
    axis = None if granularity is Granularity.PER_TENSOR else (1 if granularity.block_size else 0)

    def errors(bits, weight_range):
        q = quantize_weight(w, bits=bits, granularity=granularity, symmetric=symmetric, scale_rule=ScaleRule.FLOAT,
                            channel_axis=0, reduce_axis=1, weight_range=weight_range)
        return _group_sum(np.square(q.dequantize() - w), axis, granularity.block_size)

    for bits in (2, 3, 4, 8):
        clipped, plain = errors(bits, WeightRange.MSE), errors(bits, WeightRange.MINMAX)
        assert np.all(clipped <= plain * (1 + 1e-4))  # float32 rounding of scales and zero points
        if bits <= 3:
            assert clipped.sum() < 0.9 * plain.sum()


def test_weight_range_is_kept_in_configs_and_keys(quantizer):
    base = LayerConfig(w_bits=2, act=ActMode.FLOAT)
    mse = LayerConfig(w_bits=2, act=ActMode.FLOAT, weight_range="mse")
    assert "weight_range" not in base.to_dict() and mse.to_dict()["weight_range"] == "mse"
    assert LayerConfig.from_dict(mse.to_dict()) == mse
    a, b = uniform_config(quantizer.layers, base), uniform_config(quantizer.layers, mse)
    assert a.key() != b.key()
    assert LayerConfig(w_bits=None, act=ActMode.FLOAT, weight_range="mse").effective().to_dict() == \
        LayerConfig(w_bits=None, act=ActMode.FLOAT).to_dict()
    with pytest.raises(ConfigError, match="weight_range"):
        LayerConfig(weight_range="p99")
    qa, qb = quantizer.build(a), quantizer.build(b)
    assert qa.SerializeToString() != qb.SerializeToString()


def test_two_bit_layers_next_to_static_activations_keep_int4_and_export_exactly():
    from qaev.problems import get_problem

    problem = get_problem("digits", eval=32)
    q = problem.quantizer
    names = q.layer_names  # the second conv reads and writes tensors its static neighbours quantize
    cfg = QuantConfig(layers={**{n: LayerConfig(w_bits=8) for n in names},
                              names[1]: LayerConfig(w_bits=2, act=ActMode.FLOAT)})
    exported = export_model(q, cfg)  # an INT2 weight there would be fused into an integer kernel that rejects it
    feed = next(iter(problem.evaluator.data.batches(batch_size=32)))
    np.testing.assert_allclose(run_batches(make_session(exported), [feed]),
                               run_batches(make_session(q.build(cfg)), [feed]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_dynamic_gemm_keeps_alpha_beta_and_trans_b(trans_b):
    from onnx import helper as h, numpy_helper as nh

    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8)).astype(np.float32)  # (K, N)
    bias = rng.normal(size=(8,)).astype(np.float32)
    node = h.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", alpha=0.5, beta=2.0, transB=trans_b)
    graph = h.make_graph([node], "g", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 16])],
                         [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 8])],
                         [nh.from_array(np.ascontiguousarray(w.T) if trans_b else w, "w"), nh.from_array(bias, "b")])
    model = load_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    x = rng.normal(size=(32, 16)).astype(np.float32)
    q = Quantizer.calibrated(model, ArrayDataset(inputs={"x": x}, name="x"), persist=False)
    # 6-bit weights: with 8-bit ones, u8 x s8 MatMulInteger saturates on x86 without VNNI
    # (pairs of products overflow int16), whatever the graph around it
    built = q.build(uniform_config(q.layers, LayerConfig(w_bits=6, act=ActMode.DYNAMIC)))
    assert "MatMulInteger" in {n.op_type for n in built.graph.node}
    expected = 0.5 * x @ w + 2.0 * bias
    got = run_batches(make_session(built), [{"x": x}])
    np.testing.assert_allclose(got, expected, atol=0.05 * float(np.abs(expected).max()))
