"""Tests for qaev.quantize.calibration.stats: single-pass histograms and the range methods derived from them."""
from __future__ import annotations


import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from qaev.quantize.calibration import stats as calibrate
from qaev.quantize.calibration.stats import ActivationStats
from qaev.config import CalibMethod
from qaev.errors import ConfigError, DataError, ModelError

M = CalibMethod


def _model() -> onnx.ModelProto:
    """x -> Identity -> ident -> Relu -> relu -> Neg -> y; plus an int64 Shape output."""
    nodes = [
        helper.make_node("Identity", ["x"], ["ident"]),
        helper.make_node("Relu", ["ident"], ["relu"]),
        helper.make_node("Neg", ["relu"], ["y"]),
        helper.make_node("Shape", ["x"], ["shape"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _stats(data: np.ndarray, *, batches: int = 4, bins: int = 2048, names=("ident",)) -> ActivationStats:
    parts = np.array_split(data.astype(np.float32).reshape(-1, 4), batches)
    return ActivationStats.collect(_model(), list(names), ({"x": p} for p in parts), bins=bins)


def _heavy(rng, n=100_000) -> np.ndarray:
    x = rng.normal(size=n)
    x[:8] = [36.0, -33.0, 38.0, 31.0, -40.0, 35.0, 32.0, 39.0]
    return rng.permutation(x)


def _qmse(x: np.ndarray, lo: float, hi: float, bits: int) -> float:
    """Actual squared error of an asymmetric float-grid quantizer with 2**bits levels."""
    step = (hi - lo) / (2**bits - 1)
    q = lo + step * np.clip(np.round((x - lo) / step), 0, 2**bits - 1)
    return float(np.mean((x - q) ** 2))


def test_doubling_histogram_equals_direct_histogram():
    rng = np.random.default_rng(0)
    parts = [rng.normal(scale=s, size=(4000, 4)).astype(np.float32) for s in (0.1, 0.5, 7.0, 3.0, 40.0)]
    stats = ActivationStats.collect(_model(), ["ident"], ({"x": p} for p in parts), bins=256)
    counts, radius = stats.histogram("ident")
    first = np.abs(parts[0]).max()
    assert radius > np.abs(np.concatenate(parts)).max()
    assert radius / first == 2 ** round(np.log2(radius / first))
    assert radius / first >= 2**8  # several doublings happened
    direct, _ = np.histogram(np.concatenate(parts).astype(np.float64), bins=256, range=(-radius, radius))
    np.testing.assert_array_equal(counts, direct)


def test_minmax_exact_and_graph_input_and_output_tensors():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1000, 4)).astype(np.float32)
    stats = _stats(x, names=("x", "ident", "relu", "y", "ident"))
    assert stats.tensors == ("x", "ident", "relu", "y")
    assert stats.minmax("x") == stats.minmax("ident") == (float(x.min()), float(x.max()))
    assert stats.minmax("y") == (-float(x.max()), 0.0)
    assert stats.range("ident", M.MINMAX, 8) == (float(x.min()), float(x.max()))
    t = float(np.abs(x).max())
    assert stats.range("ident", "minmax", 8, symmetric=True) == (-t, t)
    assert stats.range("relu", M.MINMAX, 8) == (0.0, float(x.max()))


def test_percentile_100_is_minmax_and_matches_true_quantiles():
    rng = np.random.default_rng(2)
    x = rng.normal(size=100_000)
    stats = _stats(x)
    assert stats.range("ident", M.PERCENTILE, 8, percentile=100.0) == stats.minmax("ident")
    lo, hi = stats.range("ident", M.PERCENTILE, 8, percentile=99.0)
    x32 = x.astype(np.float32)
    assert lo == pytest.approx(np.quantile(x32, 0.005), abs=0.01)
    assert hi == pytest.approx(np.quantile(x32, 0.995), abs=0.01)
    lo, hi = stats.range("ident", M.PERCENTILE, 8, symmetric=True, percentile=95.0)
    assert hi == -lo == pytest.approx(np.quantile(np.abs(x32), 0.95), abs=0.01)
    u = rng.uniform(0.5, 2.0, size=100_000)  # positive only: range still contains zero
    lo, hi = _stats(u).range("ident", M.PERCENTILE, 8, percentile=90.0)
    assert lo == 0.0 and hi == pytest.approx(np.quantile(u.astype(np.float32), 0.95), abs=0.005)


# MSE keeps rare outliers at 8 bits when their clipping cost beats the rounding noise
# (outlier fraction above ~1 / (12 * 127**2)), so its clipping is checked at 4 bits.
@pytest.mark.parametrize(("method", "bits"), [(M.ENTROPY, 8), (M.ENTROPY, 4), (M.MSE, 4)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_entropy_and_mse_clip_outliers_but_keep_uniform(method, bits, symmetric):
    rng = np.random.default_rng(3)
    lo, hi = _stats(_heavy(rng)).range("ident", method, bits, symmetric=symmetric)
    assert lo <= 0.0 <= hi
    # max - min is 80; an asymmetric 8-bit window spans >= 256 of the ~2048 bins (~19)
    assert hi - lo < 24.0
    assert hi > 2.0 and -lo > 2.0
    u = rng.uniform(-1.0, 3.0, size=100_000)
    lo, hi = _stats(u).range("ident", method, 8, symmetric=symmetric)
    kept = np.mean((u >= lo) & (u <= hi))
    assert kept > 0.99 and hi > 2.95


@pytest.mark.parametrize("method", [M.ENTROPY, M.MSE])
def test_one_sided_data_gets_zero_lower_bound(method):
    rng = np.random.default_rng(4)
    x = np.abs(_heavy(rng))
    lo, hi = _stats(x).range("ident", method, 4)
    assert lo == 0.0 and 2.0 < hi < 12.0
    lo, hi = _stats(-x).range("ident", method, 4)
    assert hi == 0.0 and -12.0 < lo < -2.0


@pytest.mark.parametrize("data", ["normal", "heavy", "skewed"])
def test_mse_range_beats_minmax_at_4_bits(data):
    rng = np.random.default_rng(5)
    x = {"normal": rng.normal(size=100_000), "heavy": _heavy(rng),
         "skewed": rng.exponential(size=100_000) - 0.3}[data]
    stats = _stats(x)
    x32 = x.astype(np.float32).astype(np.float64)
    lo, hi = stats.range("ident", M.MSE, 4)
    mm = stats.minmax("ident")
    assert _qmse(x32, lo, hi, 4) <= _qmse(x32, *mm, 4)
    if data == "heavy":
        assert _qmse(x32, lo, hi, 4) < 0.1 * _qmse(x32, *mm, 4)


def test_every_bit_width_and_method_gives_a_valid_range():
    rng = np.random.default_rng(6)
    stats = _stats(rng.laplace(size=20_000) + 0.5, bins=512)
    mm = stats.minmax("ident")
    amax = max(mm[1], -mm[0])
    for bits in range(2, 17):
        for method in M:
            for sym in (False, True):
                lo, hi = stats.range("ident", method, bits, symmetric=sym)
                assert lo <= 0.0 <= hi
                if sym:
                    assert lo == -hi and hi <= amax
                else:
                    assert mm[0] <= lo and hi <= mm[1]
    assert stats.range("ident", M.ENTROPY, 16) == mm  # histogram too coarse: documented fallback


def test_entropy_at_2048_bins_stays_inside_the_observed_range():
    rng = np.random.default_rng(7)
    stats = _stats(_heavy(rng))
    lo, hi = stats.minmax("ident")
    for bits in (4, 8):
        for sym in (False, True):
            a, b = stats.range("ident", M.ENTROPY, bits, symmetric=sym)
            assert np.isfinite([a, b]).all() and a < b
            assert (-max(-lo, hi) if sym else lo) <= a and b <= (max(-lo, hi) if sym else hi)


def test_memo_and_save_load_round_trip(tmp_path, monkeypatch):
    rng = np.random.default_rng(8)
    stats = _stats(_heavy(rng), names=("ident", "relu"))
    keys = [(t, m, s) for t in stats.tensors for m in M for s in (False, True)]
    want = {(t, m, s): stats.range(t, m, 8, symmetric=s) for t, m, s in keys}
    assert len(stats.memo) == len(want)
    assert stats.range("ident", M.MINMAX, 4) is stats.range("ident", M.MINMAX, 8)  # bits irrelevant
    path = tmp_path / "stats.npz"
    stats.save(path)
    loaded = ActivationStats.load(path)
    assert dict(loaded.memo) == dict(stats.memo)
    assert loaded.tensors == stats.tensors
    for t in stats.tensors:
        assert loaded.minmax(t) == stats.minmax(t)
        np.testing.assert_array_equal(loaded.histogram(t)[0], stats.histogram(t)[0])

    def boom(*args):
        raise AssertionError("recomputed a memoised range")

    monkeypatch.setattr(calibrate, "_compute", boom)
    for (t, m, s), rng_ in want.items():
        assert loaded.range(t, m, 8, symmetric=s) == rng_
    with pytest.raises(AssertionError):  # a new key is computed, not silently cached
        loaded.range("ident", M.MSE, 3)
    monkeypatch.undo()
    assert ActivationStats.load(path).range("ident", M.MSE, 3) == stats.range("ident", M.MSE, 3)


def test_unknown_constant_and_int_tensors_raise_model_error():
    batch = [{"x": np.zeros((2, 4), np.float32)}]
    with pytest.raises(ModelError, match="'nope'"):
        ActivationStats.collect(_model(), ["ident", "nope"], batch)
    with pytest.raises(ModelError, match="'w'.*initializer"):
        ActivationStats.collect(_model(), ["w"], batch)
    with pytest.raises(ModelError, match="'shape'.*int64"):
        ActivationStats.collect(_model(), ["shape"], batch)


def test_data_errors():
    with pytest.raises(DataError, match="calibration data is empty"):
        ActivationStats.collect(_model(), ["ident"], iter([]))
    bad = np.zeros((3, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(DataError, match="'ident'.*1 non-finite"):
        ActivationStats.collect(_model(), ["ident"], [{"x": np.ones((2, 4), np.float32)}, {"x": bad}])
    with pytest.raises(DataError, match="batch 0"):
        ActivationStats.collect(_model(), ["ident"], [{"x": np.ones((2, 3), np.float32)}])
    stats = _stats(np.arange(8.0))
    with pytest.raises(DataError, match="'relu'"):
        stats.range("relu", M.MINMAX, 8)


def test_bad_options_raise_config_error():
    stats = _stats(np.arange(8.0))
    with pytest.raises(ConfigError, match="bits"):
        stats.range("ident", M.MSE, 1)
    with pytest.raises(ConfigError, match="percentile"):
        stats.range("ident", M.PERCENTILE, 8, percentile=0.0)
    with pytest.raises(ConfigError, match="method"):
        stats.range("ident", "kl", 8)
    with pytest.raises(ConfigError, match="bins"):
        ActivationStats.collect(_model(), ["ident"], [{"x": np.ones((2, 4), np.float32)}], bins=1001)


def test_progress_all_zero_first_batch_and_ranges():
    seen = []
    parts = [np.zeros((2, 4), np.float32), np.full((2, 4), 3.0, np.float32), -np.ones((2, 4), np.float32)]
    batches = ({"x": p} for p in parts)
    stats = ActivationStats.collect(_model(), ["ident", "relu"], batches, progress=seen.append)
    assert seen == [1, 2, 3]
    counts, radius = stats.histogram("ident")
    assert counts.sum() == 24 and radius >= 3.0
    direct, _ = np.histogram(np.concatenate(parts), bins=counts.size, range=(-radius, radius))
    np.testing.assert_array_equal(counts, direct)
    assert stats.ranges(["ident", "relu"], M.MINMAX, 8) == {"ident": (-1.0, 3.0), "relu": (0.0, 3.0)}
