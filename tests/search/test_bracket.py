"""Greedy-path points around the tolerance: which rows the bracket picks, and that a
predictor-led search measures them."""
from types import SimpleNamespace

import numpy as np
import pytest

import qaev.search.predictor as predictor
from qaev.problems import get_problem
from qaev.search.bracket import bracket_rows, tolerance_of
from qaev.search.operators.sampling import path_genomes, path_rows
from qaev.search.optimize import minimize
from qaev.sensitivity.probes import layer_sensitivity

PATH = [np.array([i]) for i in range(20)]


def _problem(tolerance):
    constraints = {} if tolerance is None else {"max_drop": ("acc_drop", tolerance)}
    return SimpleNamespace(scoring=SimpleNamespace(constraints=constraints),
                           space=SimpleNamespace(key=lambda row: f"k{int(row[0])}"))


@pytest.fixture
def measured(monkeypatch):
    """Set the search-split drops of path rows by index."""
    drops = {}

    def records(problem, keys):
        return [SimpleNamespace(key=k, objectives={"acc_drop": drops[int(k[1:])]}) for k in keys
                if int(k[1:]) in drops]

    monkeypatch.setattr(predictor, "training_records", records)
    return drops


def _picked(rows):
    return [int(r[0]) for r in rows]


def test_rows_fall_evenly_between_the_last_within_and_the_first_beyond(measured):
    measured.update({3: 0.2, 8: 0.5, 13: 2.0, 19: 9.0})
    assert _picked(bracket_rows(_problem(1.0), PATH, 2)) == [10, 11]
    assert _picked(bracket_rows(_problem(1.0), PATH, 10)) == [9, 10, 11, 12]
    assert _picked(bracket_rows(_problem(1.0), PATH, 4, skip={"k10"})) == [9, 11, 12]


def test_a_noisy_path_is_bracketed_after_its_last_point_within(measured):
    measured.update({3: 0.2, 8: 1.5, 13: 0.9, 16: 3.0})
    assert _picked(bracket_rows(_problem(1.0), PATH, 5)) == [14, 15]


def test_before_a_point_beyond_is_measured_the_bracket_runs_to_the_end(measured):
    measured.update({3: 0.2, 8: 0.5})
    assert _picked(bracket_rows(_problem(1.0), PATH, 3)) == [11, 14, 17]
    measured.update({0: 4.0})
    assert _picked(bracket_rows(_problem(5.0), PATH, 1)) == [14]


def test_nothing_without_a_tolerance_or_room(measured):
    measured.update({3: 0.2, 4: 2.0})
    assert bracket_rows(_problem(None), PATH, 5) == []
    assert bracket_rows(_problem(1.0), PATH, 5) == []
    assert bracket_rows(_problem(1.0), PATH, 0) == []
    assert tolerance_of(_problem(0.5)) == 0.5 and tolerance_of(_problem(None)) is None


def test_the_predictor_led_search_measures_path_points_the_first_population_skipped():
    problem = get_problem("digits", eval=150, constraints={"max_drop": 1.0})
    names = [layer.name for layer in problem.space.searchable]
    problem.sensitivity = layer_sensitivity(problem, bits=(2, 4, 8)).matrix(problem.space.w_bits,
                                                                                        layers=names)
    path = path_genomes(problem, problem.sensitivity)
    spread = {problem.space.key(r) for r in path_rows(problem, problem.sensitivity, 4)}
    minimize(problem, pop_size=8, n_gen=4, seed=0, predictor=True)
    keys = [problem.space.key(r) for r in path]
    measured = [i for i, k in enumerate(keys) if problem.store.peek(k) is not None and k not in spread]
    assert measured, "no path point beyond the first population's was measured"
    drops = {i: problem.store.peek(keys[i]).objectives["acc_drop"] for i, k in enumerate(keys)
             if problem.store.peek(k) is not None}
    within = [i for i, d in drops.items() if d <= 1.0]
    assert within and any(i > min(within) for i in measured), "the added points lie on the far side of the start"
