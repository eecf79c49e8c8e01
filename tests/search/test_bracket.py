"""Points around the tolerance: how they are made along the lowering path, which ones the
bracket picks, and that a predictor-led search measures them."""
import numpy as np

from qaev.problems import get_problem
from qaev.search.bracket import BRACKET_SHARE, LoweringPath, bracket_rows
from qaev.search.operators.sampling import lowering_path
from qaev.search.predictor import training_records
from qaev.search.optimize import minimize
from qaev.sensitivity.probes import layer_sensitivity

# Three layers at width index 0-2; layer 2 is large (an embedding table): its first step
# saves 10 of the 28 the top costs.
COSTS = np.array([[1.0, 2, 4], [1, 2, 4], [5, 10, 20]])
WIDTHS = [np.array(w) for w in ([2, 2, 2], [2, 2, 1], [1, 2, 1], [1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0])]


class _Genome:
    """Three width genes, then one other."""

    def column(self, name):
        return np.array([0, 1, 2]) if name == "w_bits" else np.array([3])


PATH = LoweringPath.of(WIDTHS, COSTS, base=np.array([2, 2, 2, 7]), genome=_Genome())


def _row(*widths, other=7):
    return np.array([*widths, other])


def _widths(rows):
    return [tuple(int(v) for v in r[:3]) for r in rows]


def test_fill_takes_the_path_steps_in_order_skipping_those_below_the_target():
    assert PATH.steps == ((2, 2), (0, 2), (1, 2), (0, 1), (1, 1), (2, 1))
    assert tuple(PATH.fill(np.array([2, 2, 2]), 25.0)) == (0, 2, 2)  # the 10-step skipped
    assert tuple(PATH.fill(np.array([2, 2, 2]), 0.0)) == (0, 0, 0)
    assert PATH.cost(np.array([0, 2, 2])) == 25.0
    assert PATH.widths(_row(1, 2, 1)).tolist() == [1, 2, 1] and PATH.widths(_row(1, 2, 1, other=3)) is None


def test_rows_fall_at_costs_between_the_smallest_within_and_the_largest_cheaper_beyond():
    measured = [(_row(2, 2, 1), 0.3), (_row(1, 1, 1), 2.0), (_row(0, 0, 0), 9.0), (_row(0, 0, 1, other=3), 0.1)]
    rows = bracket_rows(PATH, measured, 1.0, 3)
    assert _widths(rows) == [(1, 2, 1), (0, 2, 1)]  # costs 16 and 15, between 18 and 14
    assert _widths(bracket_rows(PATH, measured, 1.0, 3, skip={_row(1, 2, 1).tobytes()})) == [(0, 2, 1)]
    assert bracket_rows(PATH, measured + [(_row(1, 2, 1), 0.5), (_row(0, 2, 1), 1.5)], 1.0, 3) == []


def test_without_points_within_or_beyond_the_path_ends_bound_the_bracket():
    rows = bracket_rows(PATH, [(_row(1, 1, 1), 2.0)], 1.0, 1)  # start at the top (28), halfway to 14
    assert _widths(rows) == [(0, 0, 2)]  # cost 22: the 10-step skipped, four small ones taken
    rows = bracket_rows(PATH, [(_row(2, 2, 1), 0.3)], 1.0, 1)  # from 18 halfway to the all-lowest end (7)
    assert _widths(rows) == [(0, 1, 1)]  # cost 13
    assert bracket_rows(PATH, [(_row(2, 2, 1), 0.3)], 1.0, 0) == []


def _digits():
    problem = get_problem("digits", eval=150, constraints={"max_drop": 1.0})
    names = [layer.name for layer in problem.space.searchable]
    problem.sensitivity = layer_sensitivity(problem, bits=(2, 4, 8)).matrix(problem.space.w_bits, layers=names)
    return problem


def test_the_second_generation_measures_the_bracket_of_the_first_first():
    first = list(minimize(_digits(), pop_size=8, n_gen=1, seed=0, predictor=True).pymoo_result.algorithm._seen.items())
    problem = _digits()
    evaluated = list(minimize(problem, pop_size=8, n_gen=2, seed=0, predictor=True).pymoo_result.algorithm._seen)
    assert evaluated[:len(first)] == [k for k, _ in first]
    drops = {r.key: r.objectives["acc_drop"] for r in training_records(problem, [k for k, _ in first])}
    expected = bracket_rows(lowering_path(problem, problem.sensitivity), [(x, drops[k]) for k, x in first], 1.0,
                            int(round(BRACKET_SHARE * 8)), key=problem.space.key)
    assert expected, "the first population left no bracket: the test shows nothing"
    assert evaluated[len(first):len(first) + len(expected)] == [problem.space.key(r) for r in expected]
