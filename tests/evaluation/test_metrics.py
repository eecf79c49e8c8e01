"""Tests for qaev.evaluation.metrics; scipy serves only as an independent reference here."""
from __future__ import annotations

import math

import numpy as np
import pytest

from qaev.evaluation import metrics
from qaev.errors import DataError

stats = pytest.importorskip("scipy.stats", reason="scipy is the reference for rank statistics")
special = pytest.importorskip("scipy.special")


def test_top_k_counts_hits_in_percent():
    logits = np.array([[0.1, 0.9, 0.0],
                       [0.8, 0.1, 0.1],
                       [0.3, 0.3, 0.4],
                       [0.5, 0.2, 0.3]])
    labels = np.array([1, 2, 0, 2])
    assert metrics.top_k(logits, labels) == pytest.approx(25.0)
    # k=2: row0 hit, row1 (0.1,0.1 tie: class 1 ranks before 2) miss, row2 hit, row3 hit.
    assert metrics.top_k(logits, labels, k=2) == pytest.approx(75.0)
    assert metrics.top_k(logits, labels, k=3) == pytest.approx(100.0)


def test_top_k_does_not_reward_collapsed_or_nan_outputs():
    labels = np.arange(10) % 5
    assert metrics.top_k(np.zeros((10, 5)), labels) == pytest.approx(20.0)
    logits = np.eye(5)[labels]
    assert metrics.top_k(logits, labels) == pytest.approx(100.0)
    logits[0, 1] = np.nan
    assert metrics.top_k(logits, labels) == pytest.approx(90.0)
    assert metrics.top_k(logits, labels, k=2) == pytest.approx(90.0)


def test_top_k_rejects_bad_shapes_and_k():
    with pytest.raises(DataError):
        metrics.top_k(np.zeros((4, 3)), np.zeros(5, np.int64))
    with pytest.raises(DataError):
        metrics.top_k(np.zeros(4), np.zeros(4, np.int64))
    with pytest.raises(DataError):
        metrics.top_k(np.zeros((4, 3)), np.zeros(4, np.int64), k=4)


def test_top1_agreement():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    q = np.array([[0.9, 0.1], [0.6, 0.4], [2.0, 1.5], [np.nan, 3.0]])
    assert metrics.top1_agreement(ref, ref) == pytest.approx(100.0)
    assert metrics.top1_agreement(q, ref) == pytest.approx(50.0)
    with pytest.raises(DataError):
        metrics.top1_agreement(q[:3], ref)


def test_rankdata_matches_scipy_average_ranks():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 6, size=50).astype(np.float64)  # many ties
    np.testing.assert_allclose(metrics.rankdata(x), stats.rankdata(x, method="average"))


@pytest.mark.parametrize("ties", [False, True])
def test_spearman_and_pearson_match_scipy(ties):
    rng = np.random.default_rng(2)
    a = rng.standard_normal(200)
    b = 0.6 * a + rng.standard_normal(200)
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    assert metrics.spearman(a, b) == pytest.approx(100 * stats.spearmanr(a, b).statistic,
                                                   abs=1e-9)
    assert metrics.pearson(a, b) == pytest.approx(100 * stats.pearsonr(a, b).statistic,
                                                  abs=1e-9)


def test_spearman_edge_cases():
    a = np.arange(10.0)
    assert metrics.spearman(a, np.exp(a)) == pytest.approx(100.0)
    assert metrics.spearman(a, -a) == pytest.approx(-100.0)
    assert metrics.spearman(a, np.full(10, 0.1)) == 0.0
    assert metrics.pearson(np.full(10, 0.1), a) == 0.0
    b = a.copy()
    b[3] = np.nan
    assert math.isnan(metrics.spearman(a, b))
    with pytest.raises(DataError):
        metrics.spearman(a, a[:5])


def test_kl_divergence_matches_direct_formula():
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((20, 7)) * 3
    q = ref + rng.standard_normal((20, 7)) * 0.5
    p, r = special.softmax(ref, axis=1), special.softmax(q, axis=1)
    expected = np.mean([stats.entropy(p[i], r[i]) for i in range(20)])
    assert metrics.kl_divergence(q, ref) == pytest.approx(expected, rel=1e-9)
    assert metrics.kl_divergence(q, ref) != pytest.approx(metrics.kl_divergence(ref, q))
    assert metrics.kl_divergence(ref, ref) == pytest.approx(0.0, abs=1e-12)
    # Shift invariance and stability for very large logits.
    assert metrics.kl_divergence(q + 1000.0, ref - 5000.0) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(DataError):
        metrics.kl_divergence(q[:, :6], ref)


def test_sqnr_db():
    ref = np.ones(100, np.float32)
    assert metrics.sqnr_db(ref, ref) == math.inf
    assert metrics.sqnr_db(ref + np.float32(0.1), ref) == pytest.approx(20.0, abs=1e-4)
    assert metrics.sqnr_db(ref + np.float32(1.0), ref) == pytest.approx(0.0, abs=1e-6)
    assert metrics.sqnr_db(ref, np.zeros(100)) == -math.inf
    noisy = ref.copy()
    noisy[0] = np.nan
    assert math.isnan(metrics.sqnr_db(noisy, ref))
    with pytest.raises(DataError):
        metrics.sqnr_db(ref[:10], ref)


def test_cosine_rows():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [0.0, 0.0], [1.0, 0.0], [-3.0, -4.0]])
    np.testing.assert_allclose(metrics.cosine_rows(a, b), [0.0, 1.0, 1.0, 0.0, -1.0])
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((6, 2, 3)), rng.standard_normal((6, 2, 3))
    xf, yf = x.reshape(6, -1), y.reshape(6, -1)
    expected = (xf * yf).sum(1) / np.linalg.norm(xf, axis=1) / np.linalg.norm(yf, axis=1)
    np.testing.assert_allclose(metrics.cosine_rows(x, y), expected)
    with pytest.raises(DataError):
        metrics.cosine_rows(x, y[:5])
