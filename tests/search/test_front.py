"""Fronts and their hypervolume readings: the points kept near the front, the ceiling and
the within-tolerance share."""
import numpy as np
import pytest

from qaev.evaluation.scoring import Scoring
from qaev.runtime.store import Record
from qaev.search.front import hypervolume, hypervolume_ceiling, near_front, non_dominated, tolerance_hypervolume

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


# drop (points), size (MB): a small point that read lucky (0) beats a larger one by 0.3 and
# another by 1.5; an exact duplicate of the front's point; a point no one beats
LUCKY = np.array([[0.0, 6.0], [0.3, 8.0], [1.5, 9.0], [0.0, 6.0], [-0.5, 20.0]])


def test_near_front_keeps_what_the_front_beats_by_less_than_the_slack():
    strict = non_dominated(LUCKY)
    assert sorted(strict.tolist()) == [0, 4]
    kept = near_front(LUCKY, [0.5] * 5, drop=0)
    assert kept[:len(strict)].tolist() == strict.tolist()  # the front first, then the near points
    assert sorted(kept[len(strict):].tolist()) == [1]  # beaten by 0.3 < 0.5; 1.5 is not; no duplicate
    assert sorted(near_front(LUCKY, [2.0] * 5, drop=0).tolist()) == [0, 1, 2, 4]
    assert sorted(near_front(LUCKY, [0.0] * 5, drop=0).tolist()) == [0, 4]  # no slack: the front alone
    assert sorted(near_front(LUCKY[:, ::-1], [0.5] * 5, drop=1).tolist()) == [0, 1, 4]  # any column


def test_near_front_adds_the_nearest_first_up_to_most():
    # both beaten by the 6 MB point: 0.3 in units of 0.5 (0.6) and 1.5 in units of 2.0 (0.75)
    assert near_front(LUCKY, [0.5, 0.5, 2.0, 0.5, 0.5], drop=0, most=1)[-1] == 1
    assert near_front(LUCKY, [0.5, 1.0, 2.0, 0.5, 0.5], drop=0, most=1)[-1] == 1  # 0.3 vs 0.75
    assert near_front(LUCKY, [0.5, 0.3, 2.0, 0.5, 0.5], drop=0, most=1)[-1] == 2  # 1.0 vs 0.75
    assert len(near_front(LUCKY, [2.0] * 5, drop=0, most=0)) == 2


def test_near_front_adds_no_copy_of_a_kept_point_at_the_same_size():
    F = np.array([[0.0, 6.0], [0.2, 6.06], [0.2, 6.5], [0.25, 6.55]])  # 1 % larger, 8 % larger, then 1 % again
    assert sorted(near_front(F, [0.5] * 4, drop=0).tolist()) == [0, 2]


def _record(i: int, drop: float, size: float, se: float | None) -> Record:
    return Record(key=f"k{i}", objectives={"acc_drop": drop, "size_mb": size}, metric=80.0 - drop, config={},
                  drop_se=se)


def test_scoring_front_keeps_near_points_by_their_standard_error_at_most_as_many_as_the_front():
    records = [_record(i, d, s, 0.4) for i, (d, s) in enumerate(LUCKY)]
    scoring = Scoring(("acc_drop", "size_mb"), {})
    assert [r.key for r in scoring.front(records)] == ["k0", "k4", "k1"]
    assert [r.key for r in Scoring(("acc_drop", "size_mb"), {}, near=0.0).front(records)] == ["k0", "k4"]
    unknown = [_record(i, d, s, None) for i, (d, s) in enumerate(LUCKY)]  # no standard error: none added
    assert [r.key for r in scoring.front(unknown)] == ["k0", "k4"]
    many = records + [_record(9, 0.1, 7.0, 0.4), _record(8, 0.2, 7.5, 0.4)]  # three near, two kept
    assert [r.key for r in scoring.front(many)] == ["k0", "k4", "k9", "k8"]
