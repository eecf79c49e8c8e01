"""benchmarks/reselect.py: which records it re-measures, and its refusals."""
import json

import pytest

from tests.paths import load_benchmark

reselect = load_benchmark("reselect")


def _run(tmp_path, records, *, constraints=None):
    (tmp_path / "settings.json").write_text(json.dumps(
        {"problem": "digits", "constraints": constraints or {}, "calib": None, "eval": 100, "seed": 0}))
    (tmp_path / "evaluations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    return tmp_path


def _record(key, drop, size, **extra):
    return {"key": key, "config": {}, "objectives": {"acc_drop": drop, "size_mb": size}, **extra}


def test_candidates_are_the_best_full_measurements_within_the_bound(tmp_path):
    run = _run(tmp_path, [
        _record("a", 0.3, 1.0),
        _record("b", 0.1, 1.0),
        _record("big", 0.0, 2.5),  # over the bound
        _record("screened", 0.05, 1.0, stage={"kind": "screen", "n": 32}),  # a partial measurement
        _record("broken", None, 1.0, error="session failed"),
        _record("c", 0.2, 2.0),
        _record("d", 0.4, 0.5),
    ])
    assert [r["key"] for r in reselect.candidates(run, 2.0, 3)] == ["b", "c", "a"]
    assert [r["key"] for r in reselect.candidates(run, 0.9, 3)] == ["d"]


def test_a_run_without_a_size_bound_or_without_a_test_split_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="no size bound"):
        reselect.main([str(_run(tmp_path, [_record("a", 0.1, 1.0)]))])
    with pytest.raises(SystemExit, match="no fully measured candidate within 0.5 MB"):
        reselect.main([str(tmp_path), "--max-size-mb", "0.5"])
    with pytest.raises(SystemExit, match="has no test split"):
        reselect.main([str(_run(tmp_path, [_record("a", 0.1, 1.0)], constraints={"max_size_mb": 2.0}))])


def test_the_chosen_point_is_exported_and_its_file_measured_on_test(tmp_path, monkeypatch):
    from dataclasses import replace

    from qaev.config import ActMode, LayerConfig
    from qaev.problems import problem_parts
    from qaev.quantize import Quantizer, uniform_config

    parts = problem_parts("digits")
    monkeypatch.setattr(reselect, "problem_parts", lambda name, **kw: replace(parts, test=parts.eval))
    layers = Quantizer.calibrated(parts.model, parts.calib).layers
    configs = {bits: uniform_config(layers, LayerConfig(w_bits=bits, act=ActMode.FLOAT)).to_dict() for bits in (8, 2)}
    run = _run(tmp_path, [{**_record(f"w{b}", 0.0, 0.1), "config": c} for b, c in configs.items()],
               constraints={"max_size_mb": 1.0})
    out = tmp_path / "chosen.onnx"
    doc = reselect.main([str(run), "--export", str(out)])
    chosen = next(r for r in doc["rows"] if r["key"] == doc["chosen"])
    assert doc["chosen"] == "w8" and out.exists()  # 2-bit weights everywhere lose far more
    assert chosen["file_mb"] == out.stat().st_size / 1e6
    assert chosen["file_test_drop"] == pytest.approx(chosen["test_drop"], abs=1e-9)
