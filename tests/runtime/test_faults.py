"""Faulty candidates: a crashed worker or a hung evaluation marks that candidate, not the run."""
import signal
import subprocess
import sys
import time

from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.runtime.isolation import IsolatedRunner
from qaev.problems import get_problem
from qaev.search.optimize import minimize
from qaev.runtime.parallel import RemoteEvaluation
from tests.faults import build_faulty


def test_crash_and_hang_are_recorded_and_the_search_continues():
    problem = get_problem("digits", eval=150)
    problem.remote = RemoteEvaluation(problem.spec, build=build_faulty)
    problem.runner = IsolatedRunner(workers=2, timeout=8)
    first = problem.space.searchable[0].name
    try:
        crash = QuantConfig(layers={first: LayerConfig(w_bits=2, act=ActMode.FLOAT)})
        hang = QuantConfig(layers={first: LayerConfig(w_bits=4, act=ActMode.FLOAT)})
        fine = QuantConfig(layers={first: LayerConfig(w_bits=8)})
        records = problem.evaluate_many([crash, hang, fine])
        assert "worker process died (exit code 13)" in records[0].error
        assert "timed out" in records[1].error
        assert records[2].ok
        result = minimize(problem, pop_size=8, n_gen=2, seed=0)
    finally:
        problem.runner.close()
    assert result.front and all(r.ok for r in result.front)


def test_a_run_where_everything_fails_stops_with_a_summary(tmp_path, capsys):
    from qaev.cli.main import main

    code = main(["search", "--objectives", "acc_drop,host_latency_ms", "--max-drop", "-1000", "--pop", "4",
                 "--generations", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "no candidate met the constraints" in err


def test_sigint_writes_the_front_of_finished_work(tmp_path):
    out = tmp_path / "run"
    # A shell's background job ignores SIGINT and its children inherit that, Python included:
    # restore the default so the search gets the interrupt however the tests were started.
    proc = subprocess.Popen([sys.executable, "-m", "qaev.cli", "search", "--pop", "16", "--generations", "200",
                             "--out", str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    log = out / "evaluations.jsonl"
    while (not log.exists() or len(log.read_text().splitlines()) < 40) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert (out / "front.json").is_file()
