"""The Problem under plain pymoo, qaev.minimize, determinism, and the search CLI."""
import json
import re

import numpy as np
import pytest
import yaml
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.algorithms.moo.sms import SMSEMOA
from pymoo.optimize import minimize as pymoo_minimize
from pymoo.util.ref_dirs import get_reference_directions

from qaev.cli.main import main
from qaev.errors import ConfigError
from qaev.problems import get_problem
from qaev.search.front import non_dominated
from qaev.search.optimize import minimize


@pytest.mark.parametrize("algorithm", [
    NSGA2(pop_size=8),
    NSGA3(ref_dirs=get_reference_directions("das-dennis", 2, n_partitions=6), pop_size=8),
    SMSEMOA(pop_size=8),
])
def test_problem_runs_under_plain_pymoo(algorithm):
    problem = get_problem("digits", eval=200)
    res = pymoo_minimize(problem, algorithm, ("n_gen", 2), seed=1)
    assert res.F.ndim == 2 and res.F.shape[1] == 2
    assert problem.n_evaluated >= 8 and np.isfinite(res.F).all()


@pytest.mark.parametrize("objectives", [("acc_drop", "size_mb", "est_latency_ms"),
                                        ("acc_drop", "size_mb", "est_latency_ms", "est_energy_mj")])
def test_many_objective_nsga3(objectives):
    problem = get_problem("digits", eval=200, objectives=objectives, hardware="arm_dot")
    result = minimize(problem, algorithm="nsga3", pop_size=8, n_gen=2, seed=0)
    assert result.front and all(set(objectives) <= set(r.objectives) for r in result.front)


def test_two_objective_digits_search_gives_a_front_of_eight():
    result = minimize(get_problem("digits"), pop_size=20, n_gen=10, seed=0)
    F = np.array([[r.objectives["acc_drop"], r.objectives["size_mb"]] for r in result.front])
    strict = non_dominated(F)
    assert len(strict) >= 8
    for i, f in enumerate(F):  # the others each beaten by less than one standard error of their drop
        others = np.delete(F, i, axis=0)
        beaten = np.all(others <= f, axis=1) & np.any(others < f, axis=1)
        if i in strict:
            assert not beaten.any()
        else:
            assert 0 <= f[0] - others[beaten, 0].min() < result.front[i].drop_se
    assert len(F) - len(strict) <= len(strict)
    assert [h.gen for h in result.history] == list(range(1, 11))


def _front(seed, **kw):
    result = minimize(get_problem("digits", eval=150), pop_size=10, n_gen=4, seed=seed, **kw)
    return sorted((round(r.objectives["acc_drop"], 9), r.objectives["size_mb"]) for r in result.front)


def test_same_seed_same_front():
    assert _front(3) == _front(3)


def test_constraint_excludes_points():
    problem = get_problem("digits", eval=150, constraints={"max_drop": 2.0})
    result = minimize(problem, pop_size=10, n_gen=3, seed=0)
    assert result.front and all(r.objectives["acc_drop"] <= 2.0 for r in result.front)


def test_selector_matching_nothing_is_an_error():
    with pytest.raises(ConfigError, match="matches no layer"):
        get_problem("digits", space={"exclude": ["re:^nothing-like-this$"]})


def test_search_cli_front_reapplies_exactly(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--pop", "8", "--generations", "3", "--validation", "0", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "front.json").read_text())
    assert doc["schema"] == "qaev.front/1" and doc["points"]
    assert {o["name"]: o["kind"] for o in doc["objectives"]} == {"acc_drop": "measured", "size_mb": "exact"}
    assert len((out / "history.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    for point in doc["points"]:
        model = tmp_path / f"{point['id']}.onnx"
        assert main(["export", str(out), "--point", point["id"], "-o", str(model)]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(model), "--task", "digits", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["value"] == point["metric"]


def test_resume_reevaluates_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--pop", "8", "--generations", "2", "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = (out / "evaluations.jsonl").read_text()
    assert main(args) == 2  # non-empty without --resume
    assert main(args + ["--resume"]) == 0
    assert (out / "evaluations.jsonl").read_text() == first
    assert main(["search", "--pop", "9", "--generations", "2", "--out", str(out), "--resume"]) == 2
    assert "pop" in capsys.readouterr().err


def test_gptq_points_export_with_the_runs_recipe(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--roundings", "nearest,gptq", "--w-bits", "2,4", "--pop", "8", "--generations", "2",
                 "--validation", "0", "--max-drop", "100", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "front.json").read_text())
    gptq = [p for p in doc["points"] if "gptq" in (out / p["config"]).read_text()]
    assert gptq, "no gptq point on the front: the test shows nothing"
    model = tmp_path / "g.onnx"
    capsys.readouterr()
    assert main(["export", str(out), "--point", gptq[0]["id"], "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), "--task", "digits", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == gptq[0]["metric"]


def test_asymmetric_search_keeps_its_setting_and_its_points_are_asymmetric(tmp_path):
    out = tmp_path / "run"
    args = ["search", "--symmetry", "asymmetric", "--w-bits", "2,4", "--pop", "6", "--generations", "2",
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    assert json.loads((out / "settings.json").read_text())["spec"]["space"]["symmetric"] == [False]
    doc = json.loads((out / "front.json").read_text())
    layers = [cfg for p in doc["points"] for cfg in yaml.safe_load((out / p["config"]).read_text())["layers"].values()
              if cfg.get("w_bits")]
    assert layers and all(cfg["symmetric"] is False for cfg in layers)
    assert main(["search", "--w-bits", "2,4", "--pop", "6", "--generations", "2", "--out", str(out), "--resume",
                 "--quiet"]) == 2  # resuming with another symmetry is refused


def test_fidelity_search_on_an_unlabelled_third_party_model(tmp_path, capsys):
    import onnx

    from tests.models import conv_mlp

    model = tmp_path / "third_party.onnx"
    onnx.save(conv_mlp(seed=3), str(model))
    out = tmp_path / "run"
    assert main(["search", str(model), "--task", "fidelity", "--pop", "8", "--generations", "3",
                 "--max-drop", "100", "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "front.json").read_text())
    assert doc["metric"] == "agreement" and len(doc["points"]) >= 2
    assert all(0 <= p["metric"] <= 100 for p in doc["points"])


def test_frozen_layers_keep_their_settings_in_every_candidate(tmp_path):
    frozen = tmp_path / "frozen.yaml"
    frozen.write_text("re:Gemm$: {w_bits: 8, act: float}\n")
    out = tmp_path / "run"
    args = ["search", "--w-bits", "2,4", "--pop", "6", "--generations", "2", "--freeze", str(frozen),
            "--out", str(out), "--quiet"]
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines() if line.strip()]
    gemms = [cfg for r in records for name, cfg in r["config"]["layers"].items() if name.endswith("Gemm")]
    assert len(gemms) == 2 * len(records) and all(cfg["w_bits"] == 8 and cfg["act"] == "float" for cfg in gemms)
    assert json.loads((out / "settings.json").read_text())["spec"]["space"]["frozen"] == {
        "re:Gemm$": {"w_bits": 8, "granularity": "per_channel", "symmetric": True, "act": "float", "a_bits": 8}}


@pytest.mark.parametrize("text, message", [
    ("re:Gemm$: {w_bits: 5}\n", "frozen.yaml: re:Gemm\\$: w_bits"),
    ("re:nothing: {w_bits: 8}\n", "matches no layer"),
    ("/0/Conv: {w_bits: 2, act: float, rounding: codebook}\n", "frozen./0/Conv: layer /0/Conv is a Conv: codebook"),
    ("- 8\n", "expected a mapping of layer selector"),
])
def test_a_bad_freeze_file_is_refused_by_file_and_selector(tmp_path, capsys, text, message):
    frozen = tmp_path / "frozen.yaml"
    frozen.write_text(text)
    assert main(["search", "--pop", "6", "--generations", "1", "--freeze", str(frozen), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_near_zero_keeps_the_front_alone_and_a_resume_may_change_it(tmp_path, capsys):
    out = tmp_path / "run"  # a run whose front beats one of its points by less than its standard error
    args = ["search", "--pop", "12", "--generations", "3", "--seed", "1", "--out", str(out), "--quiet"]
    assert main(args + ["--near", "0"]) == 0
    strict = json.loads((out / "front.json").read_text())["points"]
    assert strict and not any(p.get("near") for p in strict)
    assert json.loads((out / "settings.json").read_text())["spec"]["search"]["near"] == 0
    first = (out / "evaluations.jsonl").read_text()
    assert main(args + ["--resume"]) == 0  # the default, one standard error
    assert (out / "evaluations.jsonl").read_text() == first
    points = json.loads((out / "front.json").read_text())["points"]
    assert [p["id"] for p in points if not p.get("near")] == [p["id"] for p in strict]
    assert any(p.get("near") for p in points)
    capsys.readouterr()
    assert main(args + ["--resume", "--near", "-1"]) == 2
    assert "--near" in capsys.readouterr().err


@pytest.mark.parametrize("near", [-1, "one", True, float("inf")])
def test_a_settings_file_with_a_bad_near_names_the_field(near):
    from qaev.search.spec import RunSpec

    with pytest.raises(ConfigError, match="near: expected a non-negative number"):
        RunSpec.from_dict({"source": {"problem": "digits", "options": {}}, "search": {"near": near}})
