"""Hypervolume readings of a front: the ceiling and the within-tolerance share."""
import numpy as np
import pytest

from qaev.search.front import hypervolume, hypervolume_ceiling, tolerance_hypervolume

FLOAT = [82.0, 100.0]  # float metric (scales acc_drop) and float size


def test_within_tolerance_is_the_mean_saving_over_tolerances():
    # drop (points), size (MB): within t < 0.2 the best is 50 MB (saving 0.5), within 0.2..0.6
    # it is 10 MB (0.9), within 0.6..1 it is 5 MB (0.95)
    F = np.array([[0.2, 10.0], [0.6, 5.0], [-0.1, 50.0]])
    expected = (0.2 * 0.5 + 0.4 * 0.9 + 0.4 * 0.95) / 1.0
    assert tolerance_hypervolume(F, FLOAT, drop=0, tolerance=1.0) == pytest.approx(expected)


def test_within_tolerance_ignores_points_beyond_it_and_gives_no_credit_below_zero():
    inside = np.array([[0.0, 25.0]])
    assert tolerance_hypervolume(inside, FLOAT, drop=0, tolerance=0.5) == pytest.approx(0.75)
    better_than_float = np.array([[-3.0, 25.0]])
    assert tolerance_hypervolume(better_than_float, FLOAT, drop=0, tolerance=0.5) == pytest.approx(0.75)
    beyond = np.array([[0.6, 1.0], [0.1, 120.0]])  # too lossy; larger than float
    assert tolerance_hypervolume(beyond, FLOAT, drop=0, tolerance=0.5) == 0.0
    assert tolerance_hypervolume(np.zeros((0, 2)), FLOAT, drop=0, tolerance=0.5) == 0.0
    with pytest.raises(ValueError, match="tolerance"):
        tolerance_hypervolume(inside, FLOAT, drop=0, tolerance=0.0)


def test_drop_column_may_be_any_column():
    F = np.array([[10.0, 0.2], [5.0, 0.6]])
    G = F[:, ::-1]
    assert tolerance_hypervolume(F, FLOAT[::-1], drop=1, tolerance=1.0) == pytest.approx(
        tolerance_hypervolume(G, FLOAT, drop=0, tolerance=1.0))


def test_ceiling_bounds_every_subset_and_is_reached_by_the_ideal_point():
    rng = np.random.default_rng(0)
    F = np.column_stack([rng.uniform(-0.5, 5, 40), rng.uniform(5, 100, 40)])
    ceiling = hypervolume_ceiling(F, FLOAT)
    for rows in (F, F[:10], F[F[:, 0] < 1]):
        assert hypervolume(rows, FLOAT) <= ceiling
    ideal = F.min(axis=0, keepdims=True)
    assert hypervolume(np.vstack([F, ideal]), FLOAT) == pytest.approx(ceiling)
    assert hypervolume_ceiling(np.zeros((0, 2)), FLOAT) == 0.0
