"""benchmarks/front_on_test.py: a run's shipped points read on the test split, its
within-tolerance hypervolume with and without the near points."""
import json

import onnx
import pytest

from qaev.cli.main import main
from qaev.evaluation.evaluator import Evaluator
from qaev.problems import problem_parts
from tests.paths import load_benchmark

bench = load_benchmark("front_on_test")


def test_a_rebuilt_recommended_point_ships_in_place_of_its_source():
    doc = {"points": [{"id": "p00"}, {"id": "p01", "near": True}],
           "recommended": {"id": "p00", "refined": "p00r"}, "refined": [{"id": "p00r", "from": "p00"}]}
    assert [p["id"] for p in bench.shipped(doc)] == ["p01", "p00r"]
    assert bench.shipped(doc)[-1]["rebuilt_from"] == "p00"
    assert [p["id"] for p in bench.shipped({**doc, "recommended": {"id": "p00"}})] == ["p00", "p01"]


def test_every_point_is_read_on_the_test_split_and_printed(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["search", "--pop", "6", "--generations", "2", "--out", str(run), "--quiet"]) == 0
    doc = json.loads((run / "front.json").read_text())
    capsys.readouterr()
    bench.main(["--problem", "digits", str(run), "--json", str(tmp_path / "r.json")])
    printed = capsys.readouterr().out
    reading = json.loads((tmp_path / "r.json").read_text())
    assert [r["id"] for r in reading["rows"]] == [p["id"] for p in doc["points"]]
    parts = problem_parts("digits")
    evaluator = Evaluator(parts.model, parts.test or parts.eval, metric=parts.metric)
    first = reading["rows"][0]
    again = evaluator.head_drop(evaluator.measure(onnx.load(run / "models" / "p00.onnx"), keep_outputs=True).outputs)
    assert (first["test"], first["test_se"]) == pytest.approx(again)
    assert reading["within_tolerance_hv"] >= reading["within_tolerance_hv_front_alone"] > 0
    assert f"{reading['within_tolerance_hv']:.4f} with the near points" in printed
