"""benchmarks/calib_seeds.py: the common set leaves out every seed's calibration samples."""
import numpy as np

from qaev.data import ArrayDataset
from qaev.problems.registry import Parts
from tests.paths import load_benchmark

calib_seeds = load_benchmark("calib_seeds")


def _parts(full, calib_rows, test=None):
    return Parts(model=None, calib=full.subset(calib_rows), eval=full, metric="top1", test=test, full=full)


def test_common_set_is_the_samples_no_seed_calibrated_on():
    full = ArrayDataset({"x": np.arange(20, dtype=np.float32).reshape(10, 2)}, labels=np.arange(10))
    common = calib_seeds.common_set("toy", {0: _parts(full, [0, 3, 4]), 1: _parts(full, [4, 7])})
    assert list(common.labels) == [1, 2, 5, 6, 8, 9]


def test_common_set_is_the_test_split_where_there_is_one():
    full = ArrayDataset({"x": np.zeros((4, 1), np.float32)})
    test = ArrayDataset({"x": np.ones((3, 1), np.float32)})
    assert calib_seeds.common_set("toy", {0: _parts(full, [0], test), 1: _parts(full, [1], test)}) is test


def test_digits_seeds_measure_on_their_own_split_and_the_common_set(capsys):
    out = calib_seeds.main(["--problem", "digits", "--seeds", "0,1", "--w-bits", "8", "--a-bits", "8"])
    assert [r["seed"] for r in out["rows"]] == [0, 1] and out["common_n"] == 497
    assert all(abs(r["own_drop"]) < 2 and r["own_n"] == 497 for r in out["rows"])
    # top-1 changes in steps of one sample: the drop is (lost - gained) of the changed samples
    assert all(r["changed"] >= abs(r["common_drop"]) * 497 / 100 - 1e-6 and r["common_se"] >= 0 for r in out["rows"])
    assert "common set: 497 samples" in capsys.readouterr().out


def test_excluded_layers_stay_float(capsys):
    out = calib_seeds.main(["--problem", "digits", "--seeds", "0", "--w-bits", "2", "--a-bits", "8"])
    kept = calib_seeds.main(["--problem", "digits", "--seeds", "0", "--w-bits", "2", "--a-bits", "8",
                             "--exclude", "re:.*"])
    assert kept["rows"][0]["common_drop"] == 0 and out["rows"][0]["common_drop"] != 0
    assert "; float: re:.*" in capsys.readouterr().out


def test_grid_options_reach_the_recipe(capsys):
    calib_seeds.main(["--problem", "digits", "--seeds", "0", "--w-bits", "3", "--a-bits", "float",
                      "--weight-range", "mse", "--asymmetric"])
    printed = capsys.readouterr().out
    assert "'symmetric': False" in printed and "'weight_range': 'mse'" in printed


def test_frozen_layers_take_their_settings_and_the_size_follows(tmp_path, capsys):
    plain = calib_seeds.main(["--problem", "digits", "--seeds", "0", "--w-bits", "4", "--a-bits", "float"])
    freeze = tmp_path / "freeze.yaml"
    freeze.write_text("re:.*: {w_bits: 8, act: float}\n")
    frozen = calib_seeds.main(["--problem", "digits", "--seeds", "0", "--w-bits", "4", "--a-bits", "float",
                               "--freeze", str(freeze)])
    eight = calib_seeds.main(["--problem", "digits", "--seeds", "0", "--w-bits", "8", "--a-bits", "float"])
    assert frozen["ratio"] == eight["ratio"] < plain["ratio"]
    assert frozen["rows"][0]["common_drop"] == eight["rows"][0]["common_drop"]
    assert f"frozen: {freeze}" in capsys.readouterr().out


def test_one_seed_measured_against_the_common_set_of_several(capsys):
    both = calib_seeds.main(["--problem", "digits", "--seeds", "0,1", "--w-bits", "3", "--a-bits", "float"])
    alone = calib_seeds.main(["--problem", "digits", "--seeds", "1", "--common-seeds", "0,1", "--w-bits", "3",
                              "--a-bits", "float"])
    assert alone["rows"] == both["rows"][1:] and alone["common_n"] == both["common_n"]
