"""The recommended point rebuilt with block reconstruction at the end of a search: the time it
is given, the rule that ships it, and the run that does it."""
import json

import pytest

from qaev.cli.main import main
from qaev.config import BlockSettings, LayerConfig, QuantConfig
from qaev.runtime.summary import summary
from qaev.runtime.refining import MIN_ITERS, STEP_BATCH, Refined, RefineTime, record_refined


def _config(act: str) -> QuantConfig:
    return QuantConfig(layers={"conv": LayerConfig(w_bits=4, act=act)}, block=BlockSettings(iters=300))


def test_steps_fit_the_time_left_and_static_activations_cost_more():
    cost = RefineTime(per_sample_s=0.01, batch=STEP_BATCH, measure_s=20.0)
    weights_only, static = _config("float"), _config("static")
    seconds = cost.seconds(300, static=False)
    assert cost.iters_within(seconds, weights_only, most=500) == 300
    assert cost.iters_within(seconds, static, most=500) < 300
    assert cost.iters_within(10 * seconds, weights_only, most=500) == 500  # never past the default
    assert cost.iters_within(cost.seconds(MIN_ITERS - 1, static=False), weights_only, most=500) == 0
    assert cost.seconds(300, static=True) > seconds


def test_the_step_batch_is_the_learnings():
    pytest.importorskip("torch")
    from qaev.quantize.learned.reconstruct import ReconstructOptions

    assert STEP_BATCH == ReconstructOptions().batch_size


def _refined(gap: float, se: float) -> Refined:
    after = {"validation": {"metric": 80.0, "acc_drop": 1.0, "se": 0.4, "gap": [gap, se]}}
    return Refined(config=_config("float"), after=after, before={"validation": {"metric": 80.5, "acc_drop": 0.5}},
                   seconds=1.0)


@pytest.mark.parametrize(("gap", "se", "ships"), [(0.5, 0.3, True), (0.7, 0.3, False), (-1.0, 0.3, True)])
def test_the_rebuilt_point_ships_unless_it_measured_worse_by_over_two_standard_errors(tmp_path, gap, se, ships):
    point = {"id": "p01", "objectives": {"acc_drop": 0.5, "size_mb": 1.0}, "config": "configs/p01.yaml"}
    doc = {"points": [point], "recommended": {"id": "p01", "tolerance": 1.0, "refined": "stale"}}
    assert record_refined(tmp_path, doc, point, _refined(gap, se)) == "p01r"
    written = json.loads((tmp_path / "front.json").read_text())
    assert written == doc and written["refined"][0]["id"] == "p01r"
    assert (tmp_path / "configs" / "p01r.yaml").is_file()
    assert written["recommended"].get("refined") == ("p01r" if ships else None)


def test_a_search_rebuilds_its_recommended_point_and_export_writes_it(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["search", "--pop", "8", "--generations", "2", "--refine", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "rebuilding the recommended point" in captured.err and "block 1/" in captured.err
    doc = json.loads((out / "front.json").read_text())
    (entry,) = doc["refined"]
    assert entry["from"] == doc["recommended"]["id"] and entry["iters"] == BlockSettings().iters
    assert json.loads((out / "settings.json").read_text())["spec"]["search"]["refine"] is True
    shipped = doc["recommended"].get("refined")
    assert shipped in (None, entry["id"])
    assert ("ships rebuilt" in captured.out) == (shipped is not None)
    table = summary(out)
    assert table.rebuilt == shipped and (f"recommended (ships rebuilt: {shipped})" in str(table)) == bool(shipped)
    chosen = shipped or doc["recommended"]["id"]
    for pid in ("recommended", chosen):
        assert main(["export", str(out), "--point", pid, "-o", str(tmp_path / f"{pid}.onnx")]) == 0
    assert (tmp_path / "recommended.onnx").read_bytes() == (tmp_path / f"{chosen}.onnx").read_bytes()
    # the learned model travels with the run: exported with an empty cache and learning
    # impossible (as on a machine whose arithmetic would learn another model), it comes out the same
    assert len(list((out / "learned").glob("*.npz"))) == 1
    assert main(["export", str(out), "--point", entry["id"], "-o", str(tmp_path / "rebuilt.onnx")]) == 0
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "elsewhere"))
    import qaev.quantize.learned.reconstruct as reconstruct

    monkeypatch.setattr(reconstruct, "reconstruct", lambda *a, **k: pytest.fail("learned again"))
    assert main(["export", str(out), "--point", entry["id"], "-o", str(tmp_path / "moved.onnx")]) == 0
    assert (tmp_path / "moved.onnx").read_bytes() == (tmp_path / "rebuilt.onnx").read_bytes()
    # a config alone learns again unless --learned names the folder that holds its learning
    config = str(out / entry["config"])
    with pytest.raises(pytest.fail.Exception, match="learned again"):
        main(["apply", config, "--problem", "digits", "-o", str(tmp_path / "applied.onnx")])
    assert main(["apply", config, "--problem", "digits", "--learned", str(out / "learned"),
                 "-o", str(tmp_path / "applied.onnx")]) == 0
    assert (tmp_path / "applied.onnx").read_bytes() == (tmp_path / "rebuilt.onnx").read_bytes()
    capsys.readouterr()
    assert main(["apply", config, "--problem", "digits", "--learned", str(tmp_path / "nowhere"),
                 "-o", str(tmp_path / "other.onnx")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err and not (tmp_path / "other.onnx").exists()


def test_a_timed_search_keeps_time_to_rebuild_and_fits_the_steps_to_it(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["search", "--pop", "8", "--time", "0.5", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "min kept to rebuild the recommended point with block reconstruction" in err
    doc = json.loads((out / "front.json").read_text())
    if "refined" in doc:  # else the machine was too slow to leave the time: said so
        assert MIN_ITERS <= doc["refined"][0]["iters"] <= BlockSettings().iters
    else:
        assert "no time left to rebuild the recommended point" in err


def test_no_rebuild_without_a_time_budget_or_pytorch_unless_asked(tmp_path, capsys, monkeypatch):
    import qaev.cli.search as cli_search

    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    assert main(["search", "--pop", "8", "--generations", "2", "--out", str(tmp_path / "a"), "--quiet"]) == 0
    monkeypatch.setattr(cli_search, "_has_torch", lambda: False)
    assert main(["search", "--pop", "8", "--time", "0.2", "--out", str(tmp_path / "b"), "--quiet"]) == 0
    for run in ("a", "b"):
        assert "refined" not in json.loads((tmp_path / run / "front.json").read_text())
        assert json.loads((tmp_path / run / "settings.json").read_text())["spec"]["search"]["refine"] is False


@pytest.mark.parametrize("failure", ["model", "interrupt"])
def test_a_rebuild_that_fails_or_is_interrupted_leaves_the_front_as_searched(tmp_path, capsys, monkeypatch, failure):
    import qaev.runtime.search_run as search_run
    from qaev.errors import ModelError

    def fails(*args, **kwargs):
        raise ModelError("block 3: operator 'Foo' has no PyTorch rule") if failure == "model" else KeyboardInterrupt

    monkeypatch.setattr(search_run, "refine_point", fails)
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["search", "--pop", "8", "--generations", "2", "--refine", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    doc = json.loads((out / "front.json").read_text())
    assert doc["recommended"] and "refined" not in doc and "refined" not in doc["recommended"]
    if failure == "model":
        assert code == 0 and "was not rebuilt with block reconstruction: block 3: operator 'Foo'" in err
    else:
        assert code != 0 and "interrupted; the front of the" in err and "--resume" in err


def test_a_point_with_nothing_to_rebuild_is_refused_by_name(tmp_path):
    from qaev.errors import ConfigError
    from qaev.quantize import Quantizer
    from qaev.runtime.refining import refine_point
    from qaev.data import digits_model_path
    from qaev.model.graph import load_model

    pytest.importorskip("torch")
    model = load_model(digits_model_path())
    quantizer = Quantizer(model)
    config = QuantConfig(layers={layer.name: LayerConfig(w_bits=16, act="float") for layer in quantizer.layers})
    with pytest.raises(ConfigError, match="no layer of this point is one block reconstruction rebuilds"):
        refine_point(quantizer, config, {}, block=BlockSettings(iters=1))


def test_a_resumed_run_may_rebuild_where_it_did_not_and_older_runs_resume(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["search", "--pop", "8", "--generations", "1", "--no-refine", "--out", str(out), "--quiet"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    del settings["spec"]["search"]["refine"]  # as written before the option existed
    (out / "settings.json").write_text(json.dumps(settings))
    args = ["search", "--pop", "8", "--generations", "2", "--out", str(out), "--resume", "--quiet"]
    assert main([*args, "--refine"]) == 0
    assert json.loads((out / "front.json").read_text())["refined"]


def test_a_rebuild_whose_learning_ran_behind_says_so_and_records_the_steps():
    cut = Refined(config=QuantConfig(layers={"conv": LayerConfig(w_bits=4, act="float")},
                                     block=BlockSettings(iters=300, steps=(300, 300, 120))),
                  after={}, before={}, seconds=1.0)
    point = {"id": "p01", "objectives": {}}
    assert cut.entry("p01r", point)["steps"] == [300, 300, 120]
    assert cut.steps_text() == "300 steps a block, fewer for 1 of 3 (the learning ran behind its time estimate)"
    assert "steps" not in _refined(0.0, 0.1).entry("p01r", point) and _refined(0.0, 0.1).steps_text() == \
        "300 steps a block"
    cost = RefineTime(per_sample_s=0.01, batch=STEP_BATCH, measure_s=20.0)
    assert cost.learning_deadline(1000.0) < 1000.0 - 20.0  # the measuring, and the models' building, kept after it
