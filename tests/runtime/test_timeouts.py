"""Time limits count a candidate's own evaluation, reject values that are not a positive
number, and a timed-out candidate is evaluated again by a run with a longer limit; worker
counts are clamped to what can run."""
import time

import pytest

from qaev.cli.main import main
from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.problems import get_problem
from qaev.runtime.isolation import IsolatedRunner
from qaev.runtime.store import Record


class SlowStart:
    """A task whose first call in a process prepares for 2 s (as a worker rebuilding the
    problem does) and whose evaluations take no time."""

    ready = False

    def warm(self):
        if not SlowStart.ready:
            time.sleep(2.0)
            SlowStart.ready = True

    def __call__(self, x):
        self.warm()
        return x * 2

    def failure(self, x, reason, limit_s=None):
        return f"failed: {reason}"


def test_worker_start_up_does_not_count_against_the_time_limit():
    runner = IsolatedRunner(workers=1, timeout=1.0)
    try:
        assert runner(SlowStart(), [1, 2, 3]) == [2, 4, 6]
    finally:
        runner.close()


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_a_time_limit_that_is_not_a_positive_number_is_refused(tmp_path, capsys, value):
    code = main(["search", "--pop", "4", "--generations", "1", "--timeout", value, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "--timeout" in err, err
    assert not (tmp_path / "r").exists()


def test_a_timed_out_candidate_is_evaluated_again_under_a_longer_limit():
    problem = get_problem("digits", eval=100)
    first = problem.space.searchable[0].name
    config = QuantConfig(layers={first: LayerConfig(w_bits=8, act=ActMode.FLOAT)})
    timed_out = Record(key=config.key(), objectives={}, metric=None, config=config.to_dict(),
                       error="evaluation timed out after 5 s", limit_s=5.0)
    problem.store.put(Record.from_dict(timed_out.to_dict()))

    class Limited:
        timeout = 2.0  # a shorter limit than the one it timed out under: the failure stands

    problem.runner = Limited()
    assert problem.evaluate_config(config).error is not None
    problem.runner = None  # no limit now: evaluated again
    assert problem.evaluate_config(config).ok


def test_workers_below_one_are_refused_and_too_many_are_clamped_with_a_note(tmp_path, capsys):
    code = main(["search", "--pop", "4", "--generations", "1", "--workers", "0", "--out", str(tmp_path / "r0")])
    err = capsys.readouterr().err
    assert code == 2 and "--workers" in err, err
    code = main(["search", "--pop", "4", "--generations", "1", "--eval", "100", "--workers", "64",
                 "--out", str(tmp_path / "r1")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "--workers 64: running" in err
