"""A run directory never mixes two runs: one process at a time, a resume on the same data
only, records read back validated, and bad options leave no directory behind."""
import json
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest

from qaev.cli.main import main
from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.problems import get_problem
from qaev.runtime.store import EvaluationStore, Record
from tests.models import conv_mlp

_SMALL = ["--pop", "4", "--generations", "1", "--eval", "100", "--quiet"]


def _search(capsys, out, *extra):
    code = main(["search", *_SMALL, "--out", str(out), *map(str, extra)])
    return code, capsys.readouterr().err


def _long_search(out):
    return subprocess.Popen([sys.executable, "-m", "qaev.cli", "search", "--pop", "16", "--generations", "500",
                             "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_evaluations(out, proc, n=1, limit=120):
    log = out / "evaluations.jsonl"
    deadline = time.time() + limit
    while (not log.exists() or len(log.read_text().splitlines()) < n) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)


def test_a_second_process_on_the_same_run_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _long_search(out)
    try:
        _wait_for_evaluations(out, proc)
        before = len((out / "evaluations.jsonl").read_text().splitlines())
        for extra in (["--resume"], ["--force"]):
            code, err = _search(capsys, out, *extra)
            assert code == 2 and "in use by another qaev process" in err, err
        assert (out / "settings.json").is_file(), "the refused run touched the running one's files"
        assert len((out / "evaluations.jsonl").read_text().splitlines()) >= before
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    code = main(["search", "--pop", "16", "--generations", "1", "--out", str(out), "--resume", "--quiet"])
    assert code == 0, capsys.readouterr().err  # released when that process ended


def _feeds(folder, seed):
    folder.mkdir(exist_ok=True)
    np.savez(folder / "a.npz", x=np.random.default_rng(seed).normal(size=(200, 3, 8, 8)).astype(np.float32))
    return folder


def test_resume_refuses_other_data_with_the_same_sample_counts(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(conv_mlp(), str(model))
    data = _feeds(tmp_path / "data", seed=0)
    args = [model, "--task", "fidelity", "--data", data, "--max-drop", "100"]  # a random model: any drop
    code, err = _search(capsys, tmp_path / "run", *args)
    assert code == 0, err
    _feeds(tmp_path / "data", seed=1)  # the same folder and sizes, other samples
    code, err = _search(capsys, tmp_path / "run", *args, "--resume")
    assert code == 2 and "data.calib_sha256" in err, err


def test_records_read_back_are_validated_not_trusted(tmp_path):
    problem = get_problem("digits", eval=100)
    first = problem.space.searchable[0].name
    good = problem.evaluate_config(QuantConfig(layers={first: LayerConfig(w_bits=8, act=ActMode.FLOAT)}))
    path = tmp_path / "evaluations.jsonl"
    lines = [json.dumps(good.to_dict())]
    for change in ({"config": 5}, {"metric": "abc"}, {"error": 5, "objectives": {}},
                   {"key": "0123456789abcdef"}, {"seconds": None}):
        lines.append(json.dumps({**good.to_dict(), **change}))
    lines.append("[" * 100000 + "]" * 100000)  # a line that exhausts the JSON parser's recursion
    path.write_text("\n".join(lines) + "\n")
    store = EvaluationStore(path)
    assert store.skipped == 6 and len(store) == 1


def test_a_record_without_an_objective_the_run_needs_is_evaluated_again():
    problem = get_problem("digits", eval=100)
    first = problem.space.searchable[0].name
    config = QuantConfig(layers={first: LayerConfig(w_bits=8, act=ActMode.FLOAT)})
    record = problem.evaluate_config(config)
    partial = Record.from_dict({**record.to_dict(), "objectives": {"acc_drop": record.objectives["acc_drop"]}})
    problem.store._records[record.key] = partial
    evaluated = problem.n_evaluated
    assert "size_mb" in problem.evaluate_config(config).objectives
    assert problem.n_evaluated == evaluated + 1


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    problem = get_problem("digits", eval=100)
    first = problem.space.searchable[0].name
    records = [problem.evaluate_config(QuantConfig(layers={first: LayerConfig(w_bits=b, act=ActMode.FLOAT)}))
               for b in (4, 8)]
    path = tmp_path / "evaluations.jsonl"
    path.write_text(json.dumps(records[0].to_dict()) + "\n" + json.dumps(records[1].to_dict())[:50])
    store = EvaluationStore(path)
    assert store.skipped == 1 and len(store) == 1
    store.put(records[1])
    assert len(EvaluationStore(path)) == 2


@pytest.mark.parametrize("bad", [["--exclude", "re:("], ["--hardware", "no-such-table", "--objectives",
                                                                 "acc_drop,est_latency_ms"],
                                 ["--sensitivity", "missing.json"]])
def test_bad_options_leave_no_run_directory_so_the_corrected_command_runs(tmp_path, capsys, bad):
    out = tmp_path / "run"
    code, err = _search(capsys, out, *bad)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("qaev: error"), err
    assert not out.exists()
    code, err = _search(capsys, out)
    assert code == 0, err


@pytest.mark.parametrize("staged", [[], ["--staged", "end"]])
def test_no_candidate_within_the_default_tolerance_still_writes_the_front(tmp_path, capsys, staged):
    from tests.evaluation.test_label_free import _save, _two_heads

    model = _save(_two_heads(), tmp_path / "m.onnx")  # scored by output SQNR: every candidate loses dBs
    code = main(["search", str(model), "--task", "fidelity", "--pop", "4", "--generations", "1", *staged, "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0, err
    doc = json.loads((tmp_path / "run" / "front.json").read_text())
    assert doc["points"] and doc["recommended"] is None
    assert "default tolerance" in err
    assert min(p["objectives"]["acc_drop"] for p in doc["points"]) > 1.0
    code = main(["search", str(model), "--task", "fidelity", "--pop", "4", "--generations", "1", "--max-drop", "1",
                 "--out", str(tmp_path / "bounded")])
    assert code == 2 and "no candidate met the constraints" in capsys.readouterr().err  # a bound given stays one
