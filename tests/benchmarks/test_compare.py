"""benchmarks/compare.py on digits: every method, one budget, figures from the test split."""
import importlib
import json

import numpy as np
import pytest

from qaev.data import digits_model_path
from qaev.search.front import hypervolume
from qaev.model.graph import load_model
from tests.paths import load_benchmark


@pytest.fixture(scope="module")
def compare():
    return load_benchmark("compare")


def _part(name: str):
    """A module of the comparison package beside the script (importable once it is loaded)."""
    return importlib.import_module(f"comparison.{name}")


@pytest.fixture(scope="module")
def methods(compare):
    return _part("methods")


@pytest.fixture(scope="module")
def readings(compare):
    return _part("readings")


@pytest.fixture(scope="module")
def tables(compare):
    return _part("tables")


@pytest.fixture(scope="module")
def run(compare, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    assert compare.main(["--problem", "digits", "--budget", "40", "--seed", "1", "--out", str(out)]) == 0
    return json.loads((out / "compare.json").read_text()), out


def test_every_method_is_reported_within_the_budget(compare, run, capsys):
    doc, _ = run
    methods = {m["method"]: m for m in doc["methods"]}
    assert list(methods) == [m for m in compare.METHODS if m != "qaev_default"]  # a budget run: the timed one left out
    for m in methods.values():
        assert 0 < m["passes"] <= 40, m["method"]  # a full evaluation is one pass of the search split
        if m["method"] in ("qaev_informed", "ilp"):  # probes on a few samples, charged rounded up
            assert m["passes"] <= m["evaluations"] <= 40 and m["passes"] != int(m["passes"])
        elif m["method"] != "qaev_screened":
            assert m["evaluations"] == m["passes"], m["method"]
        assert m["points"] and np.isfinite(m["hv_test"]) and m["hv_test"] > 0
        assert m["wall_s"] > 0
    assert methods["random"]["evaluations"] == 40
    screened = methods["qaev_screened"]
    assert screened["evaluations"] > 40, "screening evaluated no more candidates than the budget: it shows nothing"


def test_figures_come_from_a_disjoint_test_split(run):
    doc, _ = run
    split = doc["env"]["split"]
    assert split["search"] + split["validation"] + split["test"] == 497
    assert abs(split["search"] + split["validation"] - split["test"]) <= 1  # halved, then a quarter set apart
    assert split["validation"] == round(0.25 * (split["search"] + split["validation"]))
    assert doc["float"]["test_metric"] != doc["float"]["search_metric"]
    rows = [r for m in doc["methods"] for r in m["points"]]
    assert all("acc_drop" in r["test"] and r["test_metric"] is not None for r in rows)
    assert all(r["validation_metric"] is not None and r["validation_se"] >= 0 for r in rows)
    assert any(r["validation"]["acc_drop"] != r["search"]["acc_drop"] for r in rows)
    assert any(r["test"]["acc_drop"] != r["search"]["acc_drop"] for r in rows)
    # each test drop carries its paired standard error; a drop of zero from no change has none
    assert all(r["test_se"] >= 0 and (r["test_se"] > 0 or r["test"]["acc_drop"] == 0) for r in rows)
    assert doc["test_measurements"] > 0


def test_hypervolume_is_recomputable_from_the_reported_points(run):
    doc, _ = run
    names = list(doc["env"]["objectives"])
    for m in doc["methods"]:
        F = np.array([[r["test"][n] for n in names] for r in m["points"]])
        assert hypervolume(F, doc["hypervolume"]["scale_test"]) == pytest.approx(m["hv_test"])


def test_ceiling_bounds_every_method_and_within_tolerance_is_recomputable(compare, run):
    doc, _ = run
    figures = doc["hypervolume"]["tolerance"]
    assert figures["tolerance"] == 1.0
    assert all(m["hv_test"] <= figures["ceiling"] + 1e-12 for m in doc["methods"])
    assert all(0.0 <= v <= 1.0 for v in figures["within_tolerance"].values())
    methods = {m["method"] for m in doc["methods"]}
    near = {m["method"] for m in doc["methods"] if any(r["extra"].get("near") for r in m["points"])}
    assert near <= {m for m in methods if m.startswith("qaev")}  # only qaev's fronts keep near points
    assert set(figures["within_tolerance"]) == methods | {f"{m} (front alone)" for m in near}
    for m in near:  # the near points only add to what the front alone covers
        assert figures["within_tolerance"][m] >= figures["within_tolerance"][f"{m} (front alone)"]
    again = compare.tolerance_figures(doc, 1.0)
    assert again["ceiling"] == pytest.approx(figures["ceiling"])
    assert again["within_tolerance"] == pytest.approx(figures["within_tolerance"])
    assert compare.tolerance_figures(doc, 3.0)["within_tolerance"]["qaev"] >= figures["within_tolerance"]["qaev"]


def test_budgets_provenance_and_plot(run):
    doc, out = run
    for m in doc["methods"]:
        assert set(m["best_under"]) == {"size_mb <= float/4", "size_mb <= float/7", "size_mb <= float/11"}
        for best in filter(None, m["best_under"].values()):
            assert best["size_mb"] <= best["limit"]
    env = doc["env"]
    assert env["model_sha256"] == load_model(digits_model_path()).sha256
    assert env["versions"]["onnxruntime"] and env["seed"] == 1 and env["budget"] == 40
    assert env["machine"]["cpu"] and env["machine"]["cpus"] >= 1
    commit = env["code"]["commit"]  # None outside a git checkout
    assert commit is None or (len(commit) == 12 and int(commit, 16) >= 0 and isinstance(env["code"]["changed"], bool))
    assert env["objectives"] == {"acc_drop": "measured", "size_mb": "exact"}
    assert (out / "fronts.png").read_bytes()[:4] == b"\x89PNG"


def test_the_script_prints_a_finished_runs_tables_as_the_run_printed_them(compare, run, capsys):
    import pathlib
    import subprocess
    import sys

    _, out = run
    args = ["--from-json", str(out / "compare.json")]
    assert compare.main(args) == 0
    printed = capsys.readouterr().out
    # run as a script from another folder: the comparison package beside it is found
    script = subprocess.run([sys.executable, str(pathlib.Path(compare.__file__)), *args], capture_output=True,
                            text=True, cwd=out, timeout=300)
    assert script.returncode == 0, script.stderr
    assert script.stdout == printed and "within-tolerance HV" in printed


def test_allocation_baselines_run_once_per_activation_setting(compare, tmp_path):
    out = tmp_path / "acts"
    argv = ["--problem", "digits", "--budget", "12", "--methods", "qaev,greedy,ilp", "--baseline-act", "a8,float",
            "--roundings", "gptq", "--bias-correction", "on", "--out", str(out)]
    assert compare.main(argv) == 0
    doc = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in doc["methods"]] == ["qaev", "greedy[a8]", "greedy[float]", "ilp[a8]", "ilp[float]"]
    assert doc["env"]["space"]["roundings"] == "gptq" and doc["env"]["space"]["bias_correction"] == "on"
    best = max(m["hv_test"] for m in doc["methods"] if m["method"] != "qaev")
    assert doc["hypervolume"]["qaev_over_best_baseline"] == pytest.approx(doc["methods"][0]["hv_test"] / best)


@pytest.mark.parametrize("split", ["validation", "search"])
def test_smallest_point_within_a_limit_is_chosen_on_the_validation_split(tables, run, split):
    doc, _ = run
    if split == "search":  # a compare.json without validation readings (--validation 0, or before them)
        doc = json.loads(json.dumps(doc))
        for m in doc["methods"]:
            for r in m["points"]:
                del r["validation"]
    rows = tables.smallest_within(doc, 1.0)
    assert [r["method"] for r in rows] == [m["method"] for m in doc["methods"]]
    chosen_elsewhere = 0
    for row, m in zip(rows, doc["methods"]):
        assert row["chosen_on"] == split
        inside = [r for r in m["points"] if r[split]["acc_drop"] <= 1.0 and r["search"]["acc_drop"] <= 1.0]
        chosen_elsewhere += len(inside) != len([r for r in m["points"] if r["search"]["acc_drop"] <= 1.0])
        if not inside:
            assert row["point"] is None
            continue
        assert row["point"]["size_mb"] == min(r["search"]["size_mb"] for r in inside)
        assert row["point"]["x_smaller"] == pytest.approx(doc["float"]["size_mb"] / row["point"]["size_mb"])
        assert row["point"]["choice_drop"] <= 1.0
    if split == "validation":  # the two splits disagree on some point: the choice is not the search split's
        assert chosen_elsewhere


def _qaev_drops(doc: dict, *, chosen: float, test: float) -> dict:
    """A copy of ``doc`` where every qaev point reads ``chosen`` on the search and validation
    splits and ``test`` on the test split."""
    doc = json.loads(json.dumps(doc))
    for point in doc["methods"][0]["points"]:
        point["search"]["acc_drop"] = point["validation"]["acc_drop"] = chosen
        point["test"]["acc_drop"] = test
    return doc


def test_the_seeds_summary_sets_qaevs_choice_against_the_largest_baseline_choice_that_holds_on_test(compare, tables,
                                                                                                    run, capsys):
    doc, _ = run
    tolerance = 1.0
    chosen = {r["method"]: r["point"] for r in tables.smallest_within(doc, tolerance)}
    held = {m: p for m, p in chosen.items()
            if not m.startswith("qaev") and p is not None and p["test_drop"] <= tolerance}
    assert held, "no baseline's choice holds on test: the summary has nothing to compare"
    best = max(held, key=lambda m: held[m]["x_smaller"])
    holding, beyond = _qaev_drops(doc, chosen=0.0, test=0.5), _qaev_drops(doc, chosen=0.0, test=tolerance + 2.0)
    smallest = min(r["search"]["size_mb"] for r in doc["methods"][0]["points"])
    rows = compare.print_seeds([holding, beyond], tolerance)
    assert [r["baseline"] for r in rows] == [best, best] and rows[0]["qaev"]["size_mb"] == smallest
    assert rows[0]["qaev_holds"] and rows[0]["ratio"] == pytest.approx(
        doc["float"]["size_mb"] / smallest / held[best]["x_smaller"])
    assert rows[1]["ratio"] is None and not rows[1]["qaev_holds"]
    out = capsys.readouterr().out
    assert "(beyond)" in out and "2 run(s)" in out and "1 run(s) without a ratio" in out, out
    assert "different code" not in out  # both from this checkout
    beyond["env"]["code"] = {"qaev": "0.0", "commit": "0123456789ab", "changed": True}
    compare.print_seeds([holding, beyond], tolerance)
    assert "seed 1: 0123456789ab with changes" in capsys.readouterr().out


def test_test_split_measures_the_same_on_several_threads(compare, readings):
    setup = compare.build_setup("digits", objectives=("acc_drop", "size_mb"), hardware=None, seed=0)
    points = [p for p in compare.run_method(setup, "random", budget=8, seed=0, pop=None).points if p.ok]
    points += compare.run_method(setup, "ort_tools", budget=8, seed=0, pop=None).points  # models, not configs
    one, two = readings.TestSplit(setup), readings.TestSplit(setup, workers=2)
    two.measure_all(points + points[:3])  # repeats measured once
    assert two.count == len({one._key(p) for p in points}) and two.count >= 8
    assert {one._key(p): one.measure(p) for p in points} == two.memo
    assert one.errors == two.errors and one.error(points[0]) == two.errors[one._key(points[0])]


def test_a_timed_run_gives_each_method_the_same_wall_time_and_the_default_space(compare, tmp_path):
    out = tmp_path / "timed"
    assert compare.main(["--problem", "digits", "--time", "0.05", "--methods", "qaev_default,uniform,greedy",
                         "--seed", "1", "--test-workers", "1", "--out", str(out)]) == 0
    doc = json.loads((out / "compare.json").read_text())
    methods = {m["method"]: m for m in doc["methods"]}
    assert list(methods) == ["qaev_default", "uniform", "greedy"]
    assert all(m["points"] for m in methods.values())
    assert "noise probes" in methods["qaev_default"]["notes"][0]
    assert methods["qaev_default"]["notes"][-1].startswith("time: probes ")  # where its wall time went
    assert doc["env"]["time_minutes"] == 0.05 and doc["env"]["searched_space"]["roundings"] == ["gptq"]


def test_the_timed_qaev_run_is_bounded_by_the_default_tolerance_as_qaev_search_is(compare, methods, tmp_path,
                                                                                 monkeypatch):
    seen, real = {}, methods.qaev_default

    def spy(problem, **options):
        seen["constraints"] = problem.constraints
        return real(problem, **options)

    monkeypatch.setattr(methods, "qaev_default", spy)
    assert compare.main(["--problem", "digits", "--time", "0.02", "--methods", "qaev_default",
                         "--test-workers", "1", "--out", str(tmp_path / "t")]) == 0
    assert seen["constraints"] == {"max_drop": 1.0}  # top-1: the tolerance qaev search recommends within


def test_the_timed_qaev_run_rebuilds_its_choice_as_qaev_search_does(compare, tmp_path, monkeypatch):
    import qaev.runtime.refining as refining

    # the plumbing, not the time model: the rebuild gets its steps however the search's last generation ran
    monkeypatch.setattr(refining.RefineTime, "iters_within", lambda self, seconds, config, most: 100)
    out = tmp_path / "rebuilt"
    assert compare.main(["--problem", "digits", "--time", "0.4", "--methods", "qaev_default",
                         "--test-workers", "1", "--out", str(out)]) == 0
    method = json.loads((out / "compare.json").read_text())["methods"][0]
    rebuilt = [p for p in method["all_points"] if p["label"].endswith("rebuilt")]
    assert len(rebuilt) == 1 and rebuilt[0]["has_config"], method["notes"]
    source = next(p for p in method["all_points"] if p["label"] == rebuilt[0]["extra"]["rebuilt_from"])
    assert rebuilt[0]["objectives"]["size_mb"] == source["objectives"]["size_mb"]
    assert source["objectives"]["acc_drop"] <= 1.0 and "rebuilt with block reconstruction" in method["notes"][-2]
    assert rebuilt[0]["extra"]["iters"] == 100
    tested = {p["label"]: p for p in method["points"]}
    # the rebuilt point ships in place of the point as searched, whatever the search split reads of it
    assert rebuilt[0]["label"] in tested and source["label"] not in tested
    assert source["extra"]["replaced_by"] == rebuilt[0]["label"]
    assert all(p["test_metric"] is not None for p in tested.values())
    # every reported point can be built again from compare.json and reads the same on test
    setup = compare.build_setup("digits", objectives=("acc_drop", "size_mb"), hardware=None, seed=0, validation=0.25)
    from qaev.config import QuantConfig

    again = setup.test.measure(setup.quantizer.build(QuantConfig.from_dict(tested[rebuilt[0]["label"]]["config"])))
    assert again.value == tested[rebuilt[0]["label"]]["test_metric"]
    # chosen on the validation split, read within qaev's time, and those readings are the ones reported
    assert "chosen on the validation split" in method["notes"][-2]
    assert all("validation" in p["extra"] for p in method["all_points"] if p["error"] is None)
    assert all(p["validation_metric"] == p["extra"]["validation"]["metric"] for p in tested.values())


def test_a_rebuild_that_measures_worse_on_validation_is_not_reported(compare, tmp_path, monkeypatch):
    import qaev.runtime.refining as refining

    monkeypatch.setattr(refining.RefineTime, "iters_within", lambda self, seconds, config, most: 20)
    monkeypatch.setattr(refining.Refined, "failed", lambda self: True)  # as qaev search: the searched point ships
    out = tmp_path / "worse"
    assert compare.main(["--problem", "digits", "--time", "0.3", "--methods", "qaev_default",
                         "--test-workers", "1", "--out", str(out)]) == 0
    method = json.loads((out / "compare.json").read_text())["methods"][0]
    assert not [p for p in method["all_points"] if p["label"].endswith("rebuilt")]
    assert method["notes"][-2].endswith("not shipped")


def test_qaev_hands_over_its_near_points_and_a_baseline_its_front_alone(readings):
    from qaev.baselines.result import MethodResult, Point

    # a 6 MB point that read lucky beats an 8 MB one by 0.3 (under its 0.4 standard error) and a 9 MB one by 1.5
    points = tuple(Point(label=f"p{i}", objectives={"acc_drop": d, "size_mb": s}, metric=80.0 - d, key=f"k{i}",
                         extra={"drop_se": 0.4}) for i, (d, s) in enumerate([(0.0, 6.0), (0.3, 8.0), (1.5, 9.0)]))
    names = ["acc_drop", "size_mb"]
    ours = readings.reported(MethodResult(method="qaev_default", points=points, evaluations=3, wall_s=1.0), names)
    assert [(p.label, p.extra.get("near", False)) for p in ours] == [("p0", False), ("p1", True)]
    theirs = readings.reported(MethodResult(method="greedy", points=points, evaluations=3, wall_s=1.0), names)
    assert [p.label for p in theirs] == ["p0"]
