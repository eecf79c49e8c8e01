"""A pymoo solution vector decodes into the config the search measured for it."""
import numpy as np
import pytest

from qaev.errors import ConfigError
from qaev.problems import get_problem
from qaev.search import minimize
from qaev.runtime.summary import summary


@pytest.fixture(scope="module")
def searched():
    problem = get_problem("digits", eval=64)
    return problem, minimize(problem, pop_size=6, n_gen=2, seed=3, predictor=False)


def test_each_row_of_res_x_decodes_to_the_config_measured_for_it(searched):
    problem, result = searched
    res = result.pymoo_result
    assert len(res.X) >= 1
    for x, f in zip(np.atleast_2d(res.X), np.atleast_2d(res.F)):
        config = problem.decode(x)
        before = len(problem.store)
        record = problem.evaluate_config(config)
        assert len(problem.store) == before  # the search measured exactly this config
        np.testing.assert_allclose(problem.objective_vector(record), f)


def test_real_genes_round_like_the_search_and_bad_shapes_are_named(searched):
    problem, _ = searched
    x = np.full(problem.n_var, 0.4)
    assert problem.decode(x) == problem.decode(np.zeros(problem.n_var))
    with pytest.raises(ConfigError, match=f"decode: expected one solution vector of {problem.n_var} genes"):
        problem.decode(np.zeros((2, problem.n_var)))


def test_a_search_result_summarises_along_the_front(searched):
    problem, result = searched
    table = summary(result, tolerance=1.0)
    assert [row.id for row in table] == [f"p{i:02d}" for i in range(len(result.front))]
    sizes = [row.objectives["size_mb"] for row in table]
    assert sizes == sorted(sizes)
    floats = problem.float_objectives()["size_mb"]
    assert all(row.x_smaller == pytest.approx(floats / row.objectives["size_mb"]) for row in table)
    within = [row for row in table if row.objectives["acc_drop"] <= 1.0]
    chosen = [row for row in table if row.recommended]
    assert chosen == ([min(within, key=lambda r: r.objectives["size_mb"])] if within else [])
    text = str(table)
    assert text.splitlines()[0].split()[:3] == ["id", "acc_drop", "size_mb"] and "x smaller" in text
