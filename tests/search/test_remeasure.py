"""The closing re-measurement times each point on the problem's own latency input where it
names one (a decoder's decoding step), and says which input it timed."""
from dataclasses import replace

from qaev.config import QuantConfig
from qaev.evaluation.latency import side_by_side
from qaev.problems import get_problem
from qaev.runtime.rundir import _latency_doc
from qaev.search.remeasure import FLOAT_NAME, remeasure_front


def _front(problem):
    config = problem.space.decode(problem.space.encode_uniform(w_bits=8, act="float"))
    return problem.evaluate_many([config])


def test_a_named_latency_input_is_timed_and_labelled(monkeypatch):
    problem = get_problem("digits", eval=64)
    front = _front(problem)
    plain = remeasure_front(problem, front, rounds=1, repeats=2).host_latency
    assert plain.input == "" and "batch 1" in _latency_doc(plain, FLOAT_NAME)["what"]
    seen = []
    feed = next(iter(problem.evaluator.data.batches(batch_size=3)))
    problem.parts = replace(problem.parts, host_feed=feed, host_feed_label="three digits at once")
    original = side_by_side
    monkeypatch.setattr("qaev.search.remeasure.side_by_side",
                        lambda files, given, **kw: seen.append(given) or original(files, given, **kw))
    timed = remeasure_front(problem, front, rounds=1, repeats=2).host_latency
    assert seen[0] is feed and timed.input == "three digits at once"
    doc = _latency_doc(timed, FLOAT_NAME)
    assert "three digits at once" in doc["what"] and doc["input"] == "three digits at once"
    assert set(timed.ms) == {FLOAT_NAME, front[0].key} and QuantConfig.from_dict(front[0].config)
