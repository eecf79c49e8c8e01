"""The contract every registered calibration method satisfies (one registry line + one module)."""
import numpy as np
import pytest

from qaev.config import CalibMethod
from qaev.quantize.calibration import CALIBRATIONS, get_calibration
from qaev.quantize.calibration.base import CalibrationMethod
from qaev.quantize.calibration.stats import ActivationStats


def test_the_config_schema_offers_exactly_the_registered_methods():
    assert [m.value for m in CalibMethod] == list(CALIBRATIONS)


@pytest.mark.parametrize("name", sorted(CALIBRATIONS))
def test_every_entry_names_a_module_whose_method_implements_a_range(name):
    method = get_calibration(name)
    assert isinstance(method, CalibrationMethod) and method.name == name
    assert type(method).range is not CalibrationMethod.range


@pytest.fixture(scope="module")
def stats():
    rng = np.random.default_rng(0)
    data = {"both": rng.standard_t(3, size=(64, 200)).astype(np.float32),
            "positive": np.abs(rng.normal(size=(64, 200))).astype(np.float32) + 0.1,
            "negative": -np.abs(rng.laplace(size=(64, 200))).astype(np.float32)}
    return ActivationStats.from_arrays(data), data


@pytest.mark.parametrize("name", sorted(CALIBRATIONS))
@pytest.mark.parametrize("tensor", ["both", "positive", "negative"])
def test_every_range_holds_zero_and_stays_within_the_values(stats, name, tensor):
    s, data = stats
    x = data[tensor]
    for bits in (4, 8):
        for symmetric in (False, True):
            lo, hi = s.range(tensor, name, bits, symmetric=symmetric)
            assert lo <= 0.0 <= hi and lo < hi
            amax = float(np.abs(x).max())
            assert -amax - 1e-6 <= lo and hi <= amax + 1e-6
            if symmetric:
                assert lo == -hi
            else:
                assert lo >= min(float(x.min()), 0.0) - 1e-6 and hi <= max(float(x.max()), 0.0) + 1e-6


@pytest.mark.parametrize("name", sorted(CALIBRATIONS))
def test_a_range_depends_on_the_width_only_when_the_entry_says_so(stats, name):
    s, _ = stats
    ranges = {bits: s.range("both", name, bits) for bits in (2, 4, 8, 16)}
    if not CALIBRATIONS[name].uses_bits:
        assert len(set(ranges.values())) == 1
