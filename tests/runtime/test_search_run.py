"""A search run end to end: the validation split, the recommended point, the time budget."""
import json
import re
import time

import pytest

from qaev.cli.main import main
from qaev.quantize.footprint import format_mb
from qaev.runtime.summary import summary
from qaev.config import QuantConfig
from qaev.problems import get_problem
from qaev.search.problem import UNSTARTED


def test_the_front_is_checked_on_validation_and_the_recommended_point_exports(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--pop", "8", "--generations", "3", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "front.json").read_text())
    assert doc["float"]["n"] + doc["float"]["validation"]["n"] == 497  # the digits test split, set apart
    assert all("validation" in p for p in doc["points"]) and doc["provisional"] is False
    chosen = doc["recommended"]
    assert chosen["chosen_on"] == "validation" and chosen["tolerance"] == 1.0
    point = next(p for p in doc["points"] if p["id"] == chosen["id"])
    assert point["validation"]["acc_drop"] <= 1.0
    within = [p for p in doc["points"] if p["validation"]["acc_drop"] <= 1.0 and p["objectives"]["acc_drop"] <= 1.0]
    n_val = doc["float"]["validation"]["n"]
    for p in doc["points"]:  # top-1 items differ by 0 or +-100 points: 0 < se <= 100 / sqrt(n) once any differs
        checked = p["validation"]
        assert (checked["se"] > 0 if checked["acc_drop"] != 0 else checked["se"] >= 0)
        assert checked["se"] <= 100 / n_val ** 0.5
    assert point["objectives"]["size_mb"] == min(p["objectives"]["size_mb"] for p in within)
    _check_near(doc["points"])
    timed = doc["host_latency"]  # every point's exported file beside the float model, at batch 1
    assert timed["kind"] == "measured" and timed["batch"] == 1 and timed["threads"] == 1 and timed["float_ms"] > 0
    assert timed["rounds"] >= 1 and timed["cpus"] >= 1
    for p in doc["points"]:
        assert p["host_latency_ms"] > 0 and p["host_speedup"] == pytest.approx(timed["float_ms"] / p["host_latency_ms"])
    settings = json.loads((out / "settings.json").read_text())
    assert settings["spec"]["constraints"] == {"max_drop": 1.0}  # the default bound is recorded
    capsys.readouterr()
    assert main(["export", str(out), "--point", "recommended", "-o", str(tmp_path / "r.onnx")]) == 0
    assert (tmp_path / "r.onnx").stat().st_size > 0
    _check_sizes(doc, point, capsys.readouterr().out, (tmp_path / "r.onnx").stat().st_size)
    table = summary(out)
    assert [row.id for row in table] == [p["id"] for p in doc["points"]]
    assert [row.id for row in table if row.recommended] == [chosen["id"]]
    assert "x smaller" in str(table).splitlines()[0]


def test_a_lucky_validation_reading_does_not_ship_a_point_the_search_measured_beyond_the_tolerance():
    from qaev.runtime.rundir import recommend

    points = [{"id": "small", "objectives": {"acc_drop": 4.0, "size_mb": 1.0}, "validation": {"acc_drop": 0.5}},
              {"id": "mid", "objectives": {"acc_drop": 0.9, "size_mb": 2.0}, "validation": {"acc_drop": 0.8}},
              {"id": "big", "objectives": {"acc_drop": 0.1, "size_mb": 3.0}, "validation": {"acc_drop": 1.5}}]
    chosen = recommend(points, ["acc_drop", "size_mb"], 1.0)
    assert chosen["id"] == "mid" and chosen["chosen_on"] == "validation"
    assert recommend(points[:1], ["acc_drop", "size_mb"], 1.0) is None


def _check_sizes(doc, point, printed, file_bytes):
    """Both sizes, named, in front.json and in the export line; "x smaller" from the bit counts."""
    float_mb = doc["float"]["sizes"]["bit_count_mb"]
    assert float_mb == pytest.approx(doc["float"]["size_mb"])
    for p in doc["points"]:
        sizes = p["sizes"]
        assert sizes["bit_count_mb"] == pytest.approx(p["objectives"]["size_mb"])
        assert sizes["file_mb"] > 0 and sizes["x_smaller"] == pytest.approx(float_mb / sizes["bit_count_mb"],
                                                                            rel=1e-3)
    sizes = point["sizes"]
    assert sizes["file_mb"] == file_bytes / 1e6  # the exported file is the one re-measured
    assert f"weights {format_mb(sizes['bit_count_mb'])} MB by bit count" in printed
    assert f"file {format_mb(file_bytes / 1e6)} MB" in printed
    assert f"{sizes['x_smaller']:.3g}x smaller than float" in printed


def test_a_time_budget_ends_the_run_and_leaves_a_front_on_disk(tmp_path, capsys):
    out = tmp_path / "run"
    start = time.monotonic()
    assert main(["search", "--time", "0.05", "--out", str(out)]) == 0
    assert time.monotonic() - start < 120  # not the 10 000 generations the cap allows
    said = capsys.readouterr()
    # where the time went, phase by phase, against the budget
    assert re.search(r"time: setup \d+ s, probes \d+ s, search \d+ s, re-measuring the front \d+ s.*"
                     r"s in all \(budget 3 s\)", said.out + said.err)
    doc = json.loads((out / "front.json").read_text())
    history = (out / "history.jsonl").read_text().splitlines()
    assert doc["points"] and 1 <= len(history) < 10_000
    assert json.loads((out / "settings.json").read_text())["spec"]["search"]["time_minutes"] == 0.05


def test_after_the_deadline_no_candidate_starts_and_none_is_remembered():
    problem = get_problem("digits", eval=64)
    first = problem.space.searchable[0].name
    problem.evaluate_config(QuantConfig())
    problem.deadline = time.monotonic() - 1.0
    configs = [problem.space.decode(problem.space.encode_uniform(w_bits=b, act="float")) for b in (2, 4)]
    records = problem.evaluate_many(configs + [QuantConfig()])
    assert [r.error for r in records[:2]] == [UNSTARTED, UNSTARTED] and records[2].ok  # the memo still answers
    assert all(c.key() not in problem.store for c in configs) and first


def test_a_deadline_passed_before_anything_was_measured_still_measures_one_candidate():
    problem = get_problem("digits", eval=64)
    problem.deadline = time.monotonic() - 1.0
    configs = [problem.space.decode(problem.space.encode_uniform(w_bits=b, act="float")) for b in (8, 4, 2)]
    records = problem.evaluate_many(configs)
    assert records[0].ok and [r.error for r in records[1:]] == [UNSTARTED, UNSTARTED]


def test_the_printed_front_shows_each_points_validation_drop_and_its_error(capsys):
    from qaev.cli.search import _print_front

    point = {"id": "p00", "objectives": {"acc_drop": 0.5, "size_mb": 1.0}, "metric": 97.5,
             "validation": {"metric": 96.0, "acc_drop": 1.25, "se": 0.5}}
    doc = {"objectives": [{"name": "acc_drop", "kind": "measured"}, {"name": "size_mb", "kind": "exact"}],
           "metric": "top1", "float": {"metric": 98.0, "n": 372}, "points": [point],
           "recommended": None}
    _print_front(doc)
    out = capsys.readouterr().out
    assert "val. drop" in out and "1.25 ± 0.50" in out and "near" not in out
    larger = {**point, "id": "p01", "objectives": {"acc_drop": 0.7, "size_mb": 1.5}, "near": True}
    _print_front({**doc, "points": [point, larger]})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines if line.startswith("  p0")] == ["1.25 ± 0.50".split()[-1], "near"]
    assert any(line.startswith("  near: a smaller point measured better") for line in lines)


def _check_near(points: list[dict]) -> None:
    """Points marked ``near`` are the ones another point dominates; every point carries its
    drop's standard error on the search split."""
    def beats(a, b) -> bool:
        x, y = (a["objectives"]["acc_drop"], a["objectives"]["size_mb"]), (b["objectives"]["acc_drop"],
                                                                          b["objectives"]["size_mb"])
        return all(u <= v for u, v in zip(x, y)) and x != y

    for p in points:
        assert p["drop_se"] >= 0 and (p["drop_se"] > 0 or p["objectives"]["acc_drop"] == 0)
        assert bool(p.get("near")) == any(beats(q, p) for q in points if q is not p)
    assert sum(bool(p.get("near")) for p in points) <= sum(not p.get("near") for p in points)
