"""Blocks cut at residual joins, and block reconstruction (BRECQ/QDrop) on digits."""
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.config import ActMode, BlockSettings, LayerConfig, QuantConfig, ScaleRule
from qaev.data import ArrayDataset, load_digits_split
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.model.layers import find_layers
from qaev.model.session import make_session
from qaev.quantize import Quantizer, build_qdq, uniform_config
from qaev.quantize.learned.block_state import ActQuantizer
from qaev.quantize.learned.blocks import cut_blocks
from qaev.quantize.learned.reconstruct import ReconstructOptions, reconstruct
from qaev.quantize.weights import activation_params
from tests.learned.conftest import block_config
from tests.models import conv_mlp, images


def _residual_model() -> onnx.ModelProto:
    """conv -> relu -> [conv -> relu -> conv] + skip -> conv: one residual join."""
    rng = np.random.default_rng(0)
    w = lambda name: nh.from_array((rng.normal(size=(4, 4, 1, 1)) * 0.5).astype(np.float32), name)  # noqa: E731
    nodes = [h.make_node("Conv", ["x", "w0"], ["c0"], name="c0"), h.make_node("Relu", ["c0"], ["r0"], name="r0"),
             h.make_node("Conv", ["r0", "w1"], ["c1"], name="c1"), h.make_node("Relu", ["c1"], ["r1"], name="r1"),
             h.make_node("Conv", ["r1", "w2"], ["c2"], name="c2"), h.make_node("Add", ["r0", "c2"], ["a"], name="add"),
             h.make_node("Conv", ["a", "w3"], ["y"], name="c3")]
    graph = h.make_graph(nodes, "res", [h.make_tensor_value_info("x", T.FLOAT, ["N", 4, 5, 5])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N", 4, 5, 5])], [w(f"w{i}") for i in range(4)])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])


def test_blocks_cut_at_the_residual_join_and_never_inside_it():
    model = load_model(_residual_model())
    blocks = cut_blocks(model.proto, find_layers(model), max_layers=1)
    assert [b.layers for b in blocks] == [("c0",), ("c1", "c2"), ("c3",)]
    assert blocks[1].main_input == "r0" and blocks[1].output == "a" and blocks[-1].output == "y"
    merged = cut_blocks(model.proto, find_layers(model), max_layers=3)
    assert [b.layers for b in merged] == [("c0", "c1", "c2"), ("c3",)]


def test_block_reconstruction_lowers_every_block_error_and_is_deterministic(digits):
    model, q = digits
    config = block_config(q, w_bits=4, act=ActMode.STATIC, a_bits=8)
    options = ReconstructOptions(iters=150, batch_size=16, seed=3)
    first = reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)
    assert len(first.blocks) == 2 and all(b.after < b.before for b in first.blocks)
    assert set(first.fitted) == {layer.name for layer in q.layers if layer.has_weight}
    again = reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)
    assert dict(first.ranges) == dict(again.ranges)
    assert all(first.fitted[k].weight.q.tobytes() == again.fitted[k].weight.q.tobytes() for k in first.fitted)
    other = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(
        iters=150, batch_size=16, seed=4), inputs=q.inputs)
    assert dict(other.ranges) != dict(first.ranges)  # the seed decides every random choice


def test_learned_ranges_give_back_their_step_size_and_zero_point(digits):
    model, q = digits
    config = block_config(q, w_bits=4, act=ActMode.STATIC, a_bits=8)
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=20, seed=0),
                         inputs=q.inputs)
    assert result.ranges and "logits" not in result.ranges  # a model output keeps its min/max range
    for tensor, (lo, hi) in result.ranges.items():
        params = activation_params(lo, hi, bits=8, scale_rule=ScaleRule.FLOAT)
        start = activation_params(*config.ranges[tensor], bits=8, scale_rule=ScaleRule.FLOAT)
        assert params.zero_point == start.zero_point
        assert ActQuantizer(params, learn=False).range() == pytest.approx((lo, hi), rel=1e-6, abs=1e-9)


def test_weight_only_reconstruction_beats_nearest_on_held_out_digits(digits):
    model, q = digits
    config = block_config(q, w_bits=2, act=ActMode.FLOAT)
    evaluator = Evaluator(model, load_digits_split("test"), metric="top1")
    nearest = q.resolve(uniform_config(q.layers, LayerConfig(w_bits=2, act=ActMode.FLOAT)))
    plain = evaluator.measure(q.build(nearest, resolved=True)).value
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=300, seed=0),
                         inputs=q.inputs)
    learned = evaluator.measure(build_qdq(model, q.layers, result.config(config), fitted=result.fitted)).value
    assert learned > plain + 20


def test_only_block_layers_are_learned_the_others_keep_their_method(digits):
    model, q = digits
    base = block_config(q, w_bits=4, act=ActMode.FLOAT)
    first = q.layers[0].name
    config = QuantConfig(layers={**base.layers, first: LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="gptq")},
                         ranges=base.ranges)
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=20, seed=0),
                         inputs=q.inputs)
    assert first not in result.fitted and set(result.fitted) == {x.name for x in q.layers[1:] if x.has_weight}


def test_learned_output_shifts_reach_the_qdq_model_except_for_static_matmuls():
    model = load_model(conv_mlp())
    calib = [{"x": images(16, seed=s)} for s in range(2)]
    q = Quantizer.calibrated(model, ArrayDataset({"x": np.concatenate([b["x"] for b in calib])}), persist=False)
    config = block_config(q, w_bits=4, act=ActMode.STATIC, a_bits=8)
    result = reconstruct(model, q.layers, config, calib, options=ReconstructOptions(iters=30, batch_size=8),
                         inputs=q.inputs)
    assert result.fitted["fc1"].correction is None  # ORT's fused MatMulIntegerToFloat rejects it
    assert result.fitted["conv1"].correction is not None and result.fitted["fc2"].correction is not None
    out = make_session(build_qdq(model, q.layers, result.config(config), fitted=result.fitted)).run(None, calib[0])[0]
    assert out.shape == (16, 10) and np.isfinite(out).all()


def test_a_codebook_table_beside_learned_layers_is_held_as_the_qdq_model_holds_it(tmp_path, monkeypatch):
    """A block holding a codebook lookup (MiniLM's word table in its recipe) learns the
    layers after it from the codebook's reconstruction, not from a grid it does not have."""
    from qaev.config import Rounding
    from tests.models import attention_like

    monkeypatch.setenv("QAEV_CACHE", str(tmp_path))  # the codebook stays out of the user's cache
    model = load_model(attention_like())
    ids = np.random.default_rng(0).integers(0, 50, (16, 6)).astype(np.int64)
    q = Quantizer.calibrated(model, ArrayDataset(inputs={"ids": ids}, name="ids"), persist=False)
    config = QuantConfig(layers={"embed": LayerConfig(w_bits=2, act=ActMode.FLOAT, rounding=Rounding.CODEBOOK),
                                 "proj": LayerConfig(w_bits=4, act=ActMode.FLOAT, rounding="block")})
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=10, seed=0),
                         inputs=q.inputs)
    assert set(result.fitted) == {"proj"} and result.blocks[0].after < result.blocks[0].before
    out = make_session(build_qdq(model, q.layers, config, fitted=result.fitted)).run(None, {"ids": ids})[0]
    assert out.shape == (16, 6, 6) and np.isfinite(out).all()


@pytest.mark.parametrize("act", [ActMode.FLOAT, ActMode.STATIC])
def test_starting_from_gptq_with_its_bias_correction_is_gptq_with_bias_correction_before_any_step(digits, act):
    model, q = digits
    config = replace(block_config(q, w_bits=3, act=act, a_bits=8), block=BlockSettings(iters=0))
    layers = {k: replace(v, rounding="gptq", bias_correction=True) for k, v in config.layers.items()}
    gptq = replace(config, layers=layers)
    q.reconstruction = ReconstructOptions(iters=0, start="gptq-bc")
    feeds = next(iter(load_digits_split("test").batches(batch_size=64)))
    run = lambda proto: make_session(proto).run(None, feeds)[0]  # noqa: E731
    expected = run(q.build(gptq, resolved=True))
    np.testing.assert_allclose(run(q.build(config, resolved=True)), expected, atol=1e-4)
    q.reconstruction = ReconstructOptions(iters=0, start="gptq")  # the rounding alone: not corrected
    assert np.abs(run(q.build(config, resolved=True)) - expected).max() > 1e-3
    q.reconstruction = None


def test_a_block_the_learning_makes_worse_keeps_its_start(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    ruinous = ReconstructOptions(iters=20, lr=50.0, reg_weight=0.0, start="gptq-bc")
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ruinous, inputs=q.inputs)
    assert all(b.after <= b.before for b in result.blocks)
    assert any(b.kept_start for b in result.blocks)


def test_the_anchor_holds_the_rounding_near_its_start(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)

    def learned(anchor: float):
        options = ReconstructOptions(iters=150, anchor=anchor)
        return reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)

    free, held = learned(0.0), learned(1000.0)
    assert all(0 < b.flipped < 0.5 for b in free.blocks if not b.kept_start), [b.flipped for b in free.blocks]
    assert all(h.flipped < f.flipped for f, h in zip(free.blocks, held.blocks) if not f.kept_start)
    assert all(b.flipped == 0 for b in held.blocks if b.kept_start)
    with pytest.raises(ValueError):
        ReconstructOptions(anchor=-1.0)


def test_the_default_learning_ends_with_every_rounding_decided(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=150),
                         inputs=q.inputs)
    assert all(b.undecided < 0.01 for b in result.blocks), [b.undecided for b in result.blocks]


def test_the_kl_output_loss_fits_only_the_block_ending_at_the_model_output(digits):
    torch = pytest.importorskip("torch")
    from qaev.quantize.learned.block_state import softmax_kl

    scores = torch.randn(5, 10, dtype=torch.float64)
    assert float(softmax_kl(scores, scores).abs().max()) < 1e-12
    assert float(softmax_kl(scores + 3.0, scores).abs().max()) < 1e-9  # a shared shift ranks no class differently
    assert float(softmax_kl(2 * scores, scores).min()) > 0
    as_maps = softmax_kl((2 * scores)[:, :, None, None], scores[:, :, None, None])  # a 1x1 conv's class scores
    assert torch.allclose(as_maps, softmax_kl(2 * scores, scores))
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    run = lambda loss: reconstruct(model, q.layers, config, q.inputs.batches(), inputs=q.inputs,  # noqa: E731
                                   options=ReconstructOptions(iters=150, seed=1, output_loss=loss)).blocks
    mse, kl = run("mse"), run("kl")
    assert mse[0] == replace(kl[0], seconds=mse[0].seconds)  # the inner block is fitted as before
    assert kl[-1].before != mse[-1].before and kl[-1].after < kl[-1].before  # the last on the KL, lowered
    with pytest.raises(ValueError):
        ReconstructOptions(output_loss="cross-entropy")


def test_mirror_learns_each_block_from_the_images_and_their_mirror_images_only():
    model = load_model(conv_mlp())
    q = Quantizer.calibrated(model, ArrayDataset({"x": images(16)}), persist=False)
    base = q.resolve(uniform_config(q.layers, LayerConfig(rounding="block", w_bits=4, act=ActMode.STATIC, a_bits=8)))
    plain, mirror = (replace(base, block=BlockSettings(iters=20, mirror=m)) for m in (False, True))
    assert q.resolve(mirror).ranges == q.resolve(plain).ranges  # the ranges it starts from: the images' own
    batches = q.inputs.batches()
    flipped = [*batches, *({"x": b["x"][..., ::-1]} for b in batches)]
    by_hand = reconstruct(model, q.layers, mirror, flipped, options=ReconstructOptions(iters=20), inputs=q.inputs)
    learned = q.reconstructed(mirror)
    assert [b.after for b in learned.blocks] == [b.after for b in by_hand.blocks]
    assert learned.ranges == by_hand.ranges and learned.ranges != q.reconstructed(plain).ranges
    assert q.build(mirror).SerializeToString() != q.build(plain).SerializeToString()
    assert mirror.key() != plain.key()


def test_mirror_names_the_input_that_is_not_an_image():
    from qaev.errors import ConfigError

    model = load_model(conv_mlp())
    flat = Quantizer.calibrated(model, ArrayDataset({"x": images(8)}), persist=False)
    flat.inputs.calib = ArrayDataset({"x": np.zeros((8, 192), np.float32)})  # as a model fed flat vectors
    config = replace(uniform_config(flat.layers, LayerConfig(rounding="block", w_bits=4)),
                     block=BlockSettings(iters=1, mirror=True))
    with pytest.raises(ConfigError, match="block.mirror: calibration data: input 'x' has shape \\(8, 192\\)"):
        flat.build(config)
    assert BlockSettings.from_dict(BlockSettings(mirror=True).to_dict()).mirror
    assert "mirror" not in BlockSettings().to_dict()
    with pytest.raises(ConfigError, match="block.mirror: expected true or false"):
        BlockSettings(mirror="yes")
