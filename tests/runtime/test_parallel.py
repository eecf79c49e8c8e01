"""Parallel runners, staged evaluation and crash-safe resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from qaev.config import QuantConfig
from qaev.problems import get_problem
from qaev.search.optimize import minimize
from qaev.evaluation.staging import Staging


def _front(problem, **kw):
    result = minimize(problem, pop_size=10, n_gen=3, seed=5, **kw)
    return sorted((r.key, r.objectives["acc_drop"], r.objectives["size_mb"]) for r in result.front)


def test_dask_local_cluster_gives_the_sequential_front():
    distributed = pytest.importorskip("dask.distributed")
    from qaev.runtime.parallel import make_runner

    sequential = _front(get_problem("digits", eval=150))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            parallel = _front(get_problem("digits", eval=150, runner=make_runner(dask=client)))
    assert parallel == sequential


def test_process_workers_give_the_sequential_front():
    from qaev.runtime.parallel import make_runner

    runner = make_runner(workers=2)
    try:
        parallel = _front(get_problem("digits", eval=150, runner=runner))
    finally:
        runner.close()
    assert parallel == _front(get_problem("digits", eval=150))


def test_staged_front_carries_full_measurements_only():
    problem = get_problem("digits", staging=Staging())
    result = minimize(problem, pop_size=12, n_gen=4, seed=0)
    screened = [r for r in problem.store.records() if r.stage is not None and r.stage.kind == "subset"]
    assert screened, "staging never screened a candidate: the test shows nothing"
    keys = {r.key for r in screened}
    assert result.front and not any(r.key in keys for r in result.front)
    assert all(r.stage.n < len(problem.evaluator.data) for r in screened)
    full = get_problem("digits")
    for record in result.front[:3]:  # re-measured on the full set: the same value
        config = QuantConfig.from_dict(record.config)
        assert full.evaluate_config(config).objectives["acc_drop"] == record.objectives["acc_drop"]


def test_screening_search_finishes_few_and_reports_full_values_only():
    """Finish.END: the search runs on first-stage values; the front is fully measured,
    each point equal to a plain evaluation, and far fewer than all were finished."""
    problem = get_problem("digits", staging=Staging(finish="end", simulate=False))  # screens on its own models
    result = minimize(problem, pop_size=12, n_gen=4, seed=0)
    records = list(problem.store.records())
    screened = [r for r in records if r.stage is not None and r.stage.kind == "screen"]
    finished = [r for r in records if r.ok and r.final]
    assert screened and finished and len(finished) < len(records) / 2
    assert result.history[-1].provisional is False and result.history[0].provisional is True
    assert {r.key for r in result.front} <= {r.key for r in finished}
    first_stage = problem.staging.stops(len(problem.evaluator.data), problem.evaluator.batch_size)[0]
    assert all(r.reused == first_stage for r in finished), "a finish ran its screen's items again"
    plain = get_problem("digits")
    for record in result.front[:3]:
        config = QuantConfig.from_dict(record.config)
        assert plain.evaluate_config(config).objectives["acc_drop"] == record.objectives["acc_drop"]
    # the search saw first-stage values only: rerunning on the same store evaluates nothing
    # and takes the same path to the same front
    evaluated = problem.n_evaluated
    again = minimize(problem, pop_size=12, n_gen=4, seed=0)
    assert [r.key for r in again.front] == [r.key for r in result.front]
    assert problem.n_evaluated == evaluated


def test_screening_sets_aside_a_candidate_only_on_paired_evidence():
    problem = get_problem("digits", staging=Staging(finish="end"))
    def screened(key, items, size=1.0):
        from qaev.runtime.store import Record, Screen, Stage

        drop = sum(items) / len(items)
        return Record(key=key, objectives={"size_mb": size, "acc_drop": drop}, metric=None, config={},
                      stage=Stage(kind="screen", n=len(items)), screen=Screen(drop=drop, margin=50.0, items=items))

    better = screened("a", [0.0] * 30 + [100.0] * 2)
    worse = screened("b", [0.0] * 26 + [100.0] * 6)  # loses a's two items and four more
    noisy = screened("c", [100.0, 0.0] * 2 + [0.0] * 28)  # a's drop, on two other items
    smaller = screened("d", [0.0] * 20 + [100.0] * 12, size=0.5)
    for record in (better, worse, noisy, smaller):
        problem.store.put(record)
    from qaev.evaluation.screening import promising

    kept = [r.key for r in promising(problem.engine, problem.store)]
    assert kept == ["a", "c", "d"]  # b: worse than a on the same items; c: not distinguishable from a


def test_screening_finishes_at_most_max_finished_spread_over_the_promising():
    problem = get_problem("digits", staging=Staging(finish="end", max_finished=3))
    result = minimize(problem, pop_size=12, n_gen=3, seed=0)
    finished = [r for r in problem.store.records() if r.ok and r.final]
    assert 1 <= len(finished) <= 3 and result.front
    with pytest.raises(ValueError, match="max_finished"):
        Staging(max_finished=-1)


def test_screening_bounds_the_outputs_it_keeps_and_still_finishes_exactly(monkeypatch):
    from qaev.evaluation import candidates

    monkeypatch.setattr(candidates, "MAX_HEADS", 3)
    problem = get_problem("digits", staging=Staging(finish="end"))
    result = minimize(problem, pop_size=10, n_gen=3, seed=0)
    assert len(problem.heads) <= 3
    plain = get_problem("digits")
    for record in result.front:
        config = QuantConfig.from_dict(record.config)
        assert plain.evaluate_config(config).objectives["acc_drop"] == record.objectives["acc_drop"]


def test_staging_rejects_an_unknown_finish():
    with pytest.raises(ValueError, match="race"):
        Staging(finish="later")


def test_staging_stops_are_whole_batches_below_the_set():
    assert Staging().stops(1000, 64) == [128, 256, 512]
    assert Staging(min_samples=200).stops(1000, 64) == [256, 512]
    assert Staging().stops(100, 64) == [64]
    assert Staging().stops(60, 64) == []
    with pytest.raises(ValueError, match="increasing"):
        Staging(fractions=(0.5, 0.25))


def test_race_finishes_with_the_plain_measurement():
    """A candidate that survives every stage gets exactly the unstaged full value."""
    staged = get_problem("digits", staging=Staging(z=100.0))  # a margin nothing is dominated by
    plain = get_problem("digits")
    configs = [staged.space.decode(staged.space.encode_uniform(w_bits=b, act="a8")) for b in (8, 4, 2)]
    for config in configs:
        a = staged.evaluate_config(config)
        assert a.final
        assert a.objectives["acc_drop"] == plain.evaluate_config(config).objectives["acc_drop"]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_then_resume_reevaluates_nothing(tmp_path):
    args = [sys.executable, "-m", "qaev.cli", "search", "--pop", "16", "--generations", "8", "--seed", "2", "--quiet"]
    reference = tmp_path / "reference"
    subprocess.run(args + ["--out", str(reference)], check=True, timeout=300, capture_output=True)
    expected = _lines(reference / "evaluations.jsonl")

    run = tmp_path / "run"
    proc = subprocess.Popen(args + ["--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_lines(run / "evaluations.jsonl")) < 40 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _lines(run / "evaluations.jsonl")
    assert 0 < len(before) < len(expected), "the kill came too late to test anything"

    subprocess.run(args + ["--out", str(run), "--resume"], check=True, timeout=300, capture_output=True)
    after = _lines(run / "evaluations.jsonl")
    keys = [r["key"] for r in after]
    assert len(keys) == len(set(keys)), "a finished evaluation was repeated"
    assert after[: len(before)] == before
    assert sorted(keys) == sorted(r["key"] for r in expected)
    front = json.loads((run / "front.json").read_text())["points"]
    ref_front = json.loads((reference / "front.json").read_text())["points"]
    assert [p["objectives"] for p in front] == [p["objectives"] for p in ref_front]


def test_screening_cli_run_resumes_without_new_evaluations(tmp_path):
    args = [sys.executable, "-m", "qaev.cli", "search", "--pop", "10", "--generations", "3", "--seed", "1", "--quiet",
            "--staged", "end", "--out", str(tmp_path / "run")]
    subprocess.run(args, check=True, timeout=300, capture_output=True)
    lines = _lines(tmp_path / "run" / "evaluations.jsonl")
    assert any((record["stage"] or {}).get("kind") == "screen" for record in lines)
    assert all(record["screen"]["simulated"] for record in lines if (record["stage"] or {}).get("kind") == "screen")
    front = _untimed(json.loads((tmp_path / "run" / "front.json").read_text())["points"])
    subprocess.run(args + ["--resume"], check=True, timeout=300, capture_output=True)
    assert _lines(tmp_path / "run" / "evaluations.jsonl") == lines
    assert _untimed(json.loads((tmp_path / "run" / "front.json").read_text())["points"]) == front


def _untimed(points: list[dict]) -> list[dict]:
    """Front points without their host latency (measured again by every run)."""
    return [{k: v for k, v in p.items() if k not in ("host_latency_ms", "host_speedup")} for p in points]


def test_screening_cli_run_on_the_candidates_own_models(tmp_path):
    args = [sys.executable, "-m", "qaev.cli", "search", "--pop", "10", "--generations", "2", "--quiet",
            "--staged", "end", "--screen-on", "model", "--out", str(tmp_path / "run")]
    subprocess.run(args, check=True, timeout=300, capture_output=True)
    lines = _lines(tmp_path / "run" / "evaluations.jsonl")
    assert any((record["stage"] or {}).get("kind") == "screen" for record in lines)
    assert not any(record["screen"] and record["screen"]["simulated"] for record in lines)
    other = subprocess.run(args[:-2] + ["--screen-on", "simulator", "--out", str(tmp_path / "run"), "--resume"],
                           timeout=300, capture_output=True, text=True)
    assert other.returncode != 0 and "staging.simulate" in other.stderr  # a resumed run keeps its screen


def test_paired_gap_is_zero_for_a_model_against_itself_and_positive_for_a_worse_one():
    problem = get_problem("digits")
    ev = problem.evaluator
    batches = lambda cfg: ev.outputs(problem.quantizer.build(cfg))[0][:128]  # noqa: E731
    space = problem.space
    good, bad = (batches(space.decode(space.encode_uniform(w_bits=b, act="a8"))) for b in (8, 2))
    assert ev.paired_gap(good, good) == (0.0, 0.0)
    gap, stderr = ev.paired_gap(good, bad)
    assert gap > 3 * stderr > 0
    assert gap == pytest.approx(ev.head_drop(bad)[0] - ev.head_drop(good)[0])


def test_prepared_ahead_keeps_order_and_raises_a_failed_preparation_at_its_item():
    from qaev.runtime.prefetch import prepared_ahead

    def prepare(i):
        if i == 2:
            raise ValueError("bad item")
        return i * 10

    seen = []
    for depth in (0, 1, 2):
        out = []
        for item, future in prepared_ahead(range(5), prepare, depth=depth):
            if future is None:
                out.append(prepare(item) if item != 2 else "error")
                continue
            try:
                out.append(future.result())
            except ValueError:
                out.append("error")
        seen.append(out)
    assert seen == [[0, 10, "error", 30, 40]] * 3


def test_prefetch_gives_the_records_of_preparing_in_turn():
    records = {}
    for depth in (0, 1, 2):
        for staging in (None, Staging(), Staging(finish="end")):
            problem = get_problem("digits", eval=150, staging=staging)
            problem.prefetch = depth
            minimize(problem, pop_size=10, n_gen=3, seed=5)
            rows = sorted((r.key, r.error, tuple(sorted(r.objectives.items())), r.stage)
                          for r in problem.store.records())
            records.setdefault(str(staging), []).append(rows)
    for runs in records.values():
        assert runs[0] == runs[1] == runs[2]


def test_a_candidate_that_fails_to_build_under_prefetch_marks_only_itself():
    problem = get_problem("digits", eval=150)
    problem.prefetch = 1
    layers = problem.quantizer.layer_names
    good = QuantConfig.uniform(layers, w_bits=8)
    bad = QuantConfig(layers={"no_such_layer": {"w_bits": 4}})
    other = QuantConfig.uniform(layers, w_bits=4)
    records = problem.evaluate_many([good, bad, other])
    assert records[0].ok and records[2].ok
    assert not records[1].ok and "no_such_layer" in records[1].error


def test_leaving_prepared_ahead_early_does_not_wait_for_unused_work():
    from qaev.runtime.prefetch import prepared_ahead

    def prepare(i):
        time.sleep(0.0 if i == 0 else 2.0)
        return i

    start = time.perf_counter()
    for _item, future in prepared_ahead(range(4), prepare, depth=2):
        assert future.result() == 0
        break  # the caller stops (as on Ctrl-C) while items 1 and 2 are still being prepared
    assert time.perf_counter() - start < 1.5
