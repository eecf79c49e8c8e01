"""Calibration samples held out from block reconstruction's learning choose the state each
block keeps."""
import numpy as np
import pytest

from qaev.config import ActMode
from qaev.quantize.learned._torch import seeded_generator
from qaev.quantize.learned.block_state import Samples
from qaev.quantize.learned.holdout import holdout_split
from qaev.quantize.learned.reconstruct import ReconstructOptions, reconstruct
from tests.learned.conftest import block_config


def _samples(*sizes: int) -> Samples:
    """Chunks of the given sizes (their shapes differ, so they stay apart); sample i of a
    chunk holds the value i."""
    batches = [{"x": np.tile(np.arange(n, dtype=np.float32)[:, None, None], (1, 2, k + 1))}
               for k, n in enumerate(sizes)]
    return Samples.from_batches(batches)


def test_the_split_holds_out_a_share_of_every_chunk_and_never_all_of_one():
    samples = _samples(10, 1, 2)
    split = holdout_split(samples, 0.3, seeded_generator(0))
    assert [len(p) for p in split.held] == [3, 0, 1] and [len(p) for p in split.learn] == [7, 1, 1]
    for learn, held, n in zip(split.learn, split.held, (10, 1, 2)):
        assert sorted(learn.tolist() + held.tolist()) == list(range(n))
    held = split.samples(samples, held=True)
    assert len(held.fp) == 2 and held.q is held.fp  # the one-sample chunk is only learned from
    assert held.fp[0][:, 0, 0].tolist() == split.held[0].tolist()
    assert [t.shape[0] for t in split.targets(samples.fp, held=False)] == [7, 1, 1]
    again = holdout_split(samples, 0.3, seeded_generator(0))
    assert all(a.tolist() == b.tolist() for a, b in zip(split.held, again.held))
    with pytest.raises(ValueError, match="at least two"):
        holdout_split(_samples(1), 0.5, seeded_generator(0))
    with pytest.raises(ValueError):
        ReconstructOptions(holdout=1.0)


def test_each_block_keeps_its_best_state_on_the_held_out_samples(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    options = ReconstructOptions(iters=100, holdout=0.25, seed=2)
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)
    for b in result.blocks:
        assert b.stopped is not None and 0 <= b.stopped <= 100 and b.held_after <= b.held_before
        assert b.kept_start == (b.stopped == 0)
    assert any(b.stopped > 0 and b.held_after < b.held_before for b in result.blocks)
    again = reconstruct(model, q.layers, config, q.inputs.batches(), options=options, inputs=q.inputs)
    assert all(result.fitted[k].weight.q.tobytes() == again.fitted[k].weight.q.tobytes() for k in result.fitted)
    plain = reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=100, seed=2),
                        inputs=q.inputs)
    assert all(b.stopped is None and b.held_before is None for b in plain.blocks)


def test_a_learning_that_ruins_the_held_out_samples_keeps_the_start(digits):
    model, q = digits
    config = block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8)
    ruinous = ReconstructOptions(iters=20, lr=50.0, reg_weight=0.0, holdout=0.25)
    result = reconstruct(model, q.layers, config, q.inputs.batches(), options=ruinous, inputs=q.inputs)
    assert any(b.kept_start and b.stopped == 0 and b.held_after == b.held_before for b in result.blocks)
    assert all(b.flipped == 0 for b in result.blocks if b.kept_start)
