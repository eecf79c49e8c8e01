"""Block reconstruction within a deadline: later blocks get fewer steps where the learning
runs behind, the config records the steps each block got, and that config rebuilds the
same model without a deadline."""
import time
from dataclasses import replace

import pytest

from qaev.config import ActMode, BlockSettings, QuantConfig
from qaev.data import load_digits_split
from qaev.errors import ConfigError
from qaev.quantize import Quantizer
from qaev.quantize.learned.pacing import Pace, steps_within
from qaev.quantize.learned.reconstruct import ReconstructOptions, reconstruct

from .conftest import block_config


def test_the_steps_fit_the_time_left_and_never_exceed_the_plan():
    assert steps_within(100.0, blocks=4, step_s=0.1, other_s=5.0, planned=500) == 200  # (100 - 20) / (4 x 0.1)
    assert steps_within(1000.0, blocks=4, step_s=0.1, other_s=5.0, planned=500) == 500
    assert steps_within(10.0, blocks=4, step_s=0.1, other_s=5.0, planned=500) == 0  # the passes alone overrun
    assert steps_within(-1.0, blocks=4, step_s=0.1, other_s=0.0, planned=500) == 0


def test_the_pace_is_measured_on_the_blocks_learned_so_far(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    pace = Pace(deadline=100.0, blocks=3)
    assert pace.steps_for(500) == 500  # nothing measured yet: the plan stands
    pace.record(steps=500, learning_s=50.0, block_s=60.0)  # 0.1 s a step, 10 s besides
    clock[0] = 60.0
    assert pace.steps_for(500) == 100  # 40 s left for 2 blocks: (40 - 20) / (2 x 0.1)
    pace.record(steps=0, learning_s=0.0, block_s=1.0)  # nothing to learn: no step counted
    assert pace.steps == 500 and pace.other_s == 11.0
    clock[0] = 101.0
    assert pace.steps_for(500) == 0
    assert Pace(deadline=None, blocks=3).steps_for(500) == 500


def test_block_settings_keep_the_steps_and_refuse_bad_ones_by_name():
    settings = BlockSettings(iters=300, steps=[300, 120, 0])
    assert settings.steps == (300, 120, 0)
    assert settings.to_dict()["steps"] == [300, 120, 0] and "steps" not in BlockSettings().to_dict()
    assert BlockSettings.from_dict(settings.to_dict()) == settings
    with pytest.raises(ConfigError, match=r"block.steps\[1\]"):
        BlockSettings(steps=[10, -1])
    with pytest.raises(ConfigError, match="block.steps: expected a list"):
        BlockSettings(steps="500")


def test_steps_that_do_not_match_the_blocks_are_refused_by_name(digits):
    model, q = digits
    config = block_config(q, w_bits=4)
    with pytest.raises(ConfigError, match="block.steps: 5 step counts for the 2 blocks"):
        reconstruct(model, q.layers, config, q.inputs.batches(), options=ReconstructOptions(iters=5, steps=(5,) * 5),
                    inputs=q.inputs)


@pytest.mark.parametrize("late", [False, True])
def test_a_rebuild_by_a_deadline_records_its_steps_and_rebuilds_the_same_without_it(digits, monkeypatch, late):
    import qaev.quantize.learned.reconstruct as module

    model, q = digits
    config = replace(block_config(q, w_bits=3, act=ActMode.STATIC, a_bits=8), block=BlockSettings(iters=30))
    deadline = time.monotonic() + (-1.0 if late else 3600.0)
    learned = q.learn_within(config, deadline)
    assert learned.block.steps == ((0, 0) if late else ())  # past the deadline no block learns
    calls = []
    monkeypatch.setattr(module, "reconstruct", lambda *a, **k: calls.append(1) or reconstruct(*a, **k))
    built = q.build(learned).SerializeToString()
    assert not calls  # the model is built from what was learned, not learned again
    again = QuantConfig.from_dict(learned.to_dict())
    fresh = Quantizer.calibrated(model, load_digits_split("calib"), persist=False)
    assert fresh.build(again).SerializeToString() == built and calls == [1]
    if late:  # the blocks kept their start: the model differs from the one learned in full
        assert q.build(config).SerializeToString() != q.build(learned).SerializeToString()
