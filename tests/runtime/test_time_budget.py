"""--time keeps the time the front's closing re-measurement takes, and more as the front grows."""
import time

import pytest

from qaev.problems import get_problem
from qaev.runtime.time_budget import TimeBudget, time_budget, typical_candidate_s


def test_the_deadline_moves_earlier_as_the_front_grows():
    budget = TimeBudget(end=1000.0, one_s=2.0, validation=0.5, latency_s=1.0, floor_s=30.0)
    assert budget.per_point_s() == pytest.approx(2.0 + 2.0 * 1.5 + 1.0)  # export taken as one evaluation
    # the floor covers small fronts; the candidate in flight at the deadline is kept (one evaluation)
    assert budget.deadline(0) == budget.deadline(5) == 968.0
    assert budget.deadline(10) == pytest.approx(1000.0 - 60.0 - 2.0)
    assert budget.deadline(10, candidate_s=5.0) == pytest.approx(1000.0 - 60.0 - 5.0)  # measured candidates' time
    calls = []
    budget.time_export(lambda: calls.append(time.sleep(0.01)))
    budget.time_export(lambda: calls.append(None))  # timed once
    assert len(calls) == 1 and 0.01 <= budget.export_s < 1.0
    assert budget.deadline(60) == pytest.approx(1000.0 - 60 * budget.per_point_s() - 2.0)
    assert budget.deadline(61) < budget.deadline(60)


def test_the_budget_is_measured_on_the_problem_and_says_what_it_affords():
    problem = get_problem("digits", eval=64)
    start = time.monotonic()
    budget, text = time_budget(problem, 2.0, start)
    assert budget.end == start + 120.0 and budget.one_s > 0 and budget.latency_s > 0
    assert 0 < budget.floor_s <= 30.0 and budget.deadline(0) < budget.end
    assert "time budget 2 min" in text and "evaluations fit" in text and "more as the front grows" in text


def test_the_budget_reads_the_float_models_timed_reference_run_instead_of_running_it_again(monkeypatch):
    problem = get_problem("digits", eval=64)
    evaluator = problem.evaluator
    assert evaluator.float_value > 0  # the reference run, timed
    runs = []
    monkeypatch.setattr(type(evaluator), "outputs", lambda self, model: runs.append(model))
    budget, _ = time_budget(problem, 2.0, time.monotonic())
    measured = evaluator.float_measurement
    assert runs == [] and measured.n == 64 and measured.value == evaluator.float_value
    assert measured.session_s > 0 and measured.inference_s > 0
    assert budget.one_s >= measured.session_s + measured.inference_s


def test_the_typical_candidate_is_the_median_of_the_measured_ones():
    from qaev.runtime.store import Record

    records = [Record(key=str(i), objectives={"size": 1.0}, metric=0.5, config={}, seconds=s)
               for i, s in enumerate([3.0, 1.0, 2.0, 9.0])]
    failed = Record(key="x", objectives={}, metric=None, config={}, seconds=50.0, error="boom")
    cached = Record(key="y", objectives={"size": 1.0}, metric=0.5, config={}, seconds=0.0)
    assert typical_candidate_s(records + [failed, cached]) == pytest.approx(2.5)
    assert typical_candidate_s([failed]) is None
