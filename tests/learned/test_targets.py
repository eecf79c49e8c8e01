"""What each block is fitted to: the float model's block output, or the float block on the
quantized block's own input."""
import hashlib
import json
from dataclasses import asdict

import pytest

from qaev.config import ActMode
from qaev.quantize.learned.block_state import BlockQuantizer, Samples
from qaev.quantize.learned.blocks import cut_blocks
from qaev.quantize.learned.reconstruct import ReconstructOptions, reconstruct
from qaev.quantize.learned.store import result_key
from qaev.quantize.learned.targets import fit_targets
from tests.learned.conftest import block_config

torch = pytest.importorskip("torch")


def test_own_targets_are_the_float_block_on_the_quantized_input(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    blocks = cut_blocks(model.proto, q.layers)
    assert len(blocks) >= 2
    samples = Samples.from_batches(q.inputs.batches())
    first = BlockQuantizer(model, q.layers, config, blocks[0], carry=())
    chain, side = first.float_outputs(samples)
    assert fit_targets(first, samples, chain, "own") is chain  # the first block's input is the model's: one version
    with torch.no_grad():
        after = samples.advance(blocks[0], chain, first.quantized_outputs(samples), side)
    second = BlockQuantizer(model, q.layers, config, blocks[1], carry=())
    chain2, _ = second.float_outputs(after)
    own = fit_targets(second, after, chain2, "own")
    assert fit_targets(second, after, chain2, "float") is chain2
    with torch.no_grad():
        expected = second.graph.run({after.main: after.q[0]})[blocks[1].output]
    assert torch.equal(own[0], expected) and not torch.equal(own[0], chain2[0])


def test_learning_against_the_own_target_lowers_that_error_and_is_deterministic(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    options = ReconstructOptions(iters=60, target="own", seed=1)
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)
    assert all(b.after <= b.before for b in result.blocks) and any(b.after < b.before for b in result.blocks)
    again = reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)
    assert all(result.fitted[k].weight.q.tobytes() == again.fitted[k].weight.q.tobytes() for k in result.fitted)
    plain = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=60, seed=1),
                        inputs=q.inputs)
    assert [b.before for b in plain.blocks][1:] != [b.before for b in result.blocks][1:]
    with pytest.raises(ValueError):
        ReconstructOptions(target="nearby")


def test_the_default_target_keeps_earlier_result_keys():
    args = {"model_sha256": "m", "data_key": "d", "config_key": "c"}
    own = ReconstructOptions(target="own")
    assert result_key(**args, options=ReconstructOptions()) != result_key(**args, options=own)
    chosen = {k: v for k, v in asdict(ReconstructOptions()).items() if k not in ("learn_scale", "scale_lr", "holdout",
                                                                                  "target", "steps")}
    blob = json.dumps({"v": 2, "model": "m", "data": "d", "config": "c", "options": chosen}, sort_keys=True,
                      default=list).encode()
    assert result_key(**args, options=ReconstructOptions()) == "block-" + hashlib.sha256(blob).hexdigest()[:24]
