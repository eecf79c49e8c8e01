"""Progress of ``qaev search``: the start line comes before calibration, one update per
generation, ``--quiet`` prints only the final line, ``--json-progress`` prints JSON lines."""
import importlib.util
import io
import json

from qaev.cli.main import main
from qaev.cli.progress import best_tradeoffs, make_progress
from qaev.search.optimize import Generation
from qaev.runtime.store import Record


def _search(tmp_path, *extra):
    return main(["search", "--pop", "6", "--generations", "3", "--out", str(tmp_path / "run"), *extra])


def test_start_line_is_printed_before_calibration(tmp_path, capsys, monkeypatch):
    from qaev.quantize import quantizer

    seen = {}
    original = quantizer.Quantizer.calibrated

    def spy(*args, **kwargs):
        seen["err"] = capsys.readouterr().err
        return original(*args, **kwargs)

    monkeypatch.setattr(quantizer.Quantizer, "calibrated", spy)
    assert _search(tmp_path) == 0
    assert seen["err"].startswith("qaev search:") and "calibrating" in seen["err"]


def test_bar_mode_off_a_terminal_prints_one_line_per_generation(tmp_path, capsys):
    assert _search(tmp_path) == 0
    out, err = capsys.readouterr()
    gens = [line for line in err.splitlines() if line.startswith("gen ")]
    assert [g.split()[1] for g in gens] == ["1/3", "2/3", "3/3"]
    assert all("HV" in g and "hits" in g and "best (drop/MB)" in g for g in gens)
    lines = out.rstrip().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("wrote "))
    assert "Pareto front" in out and lines[at + 1].startswith("next: qaev export ")
    has_torch = importlib.util.find_spec("torch") is not None  # the refine hint only where it can run
    assert lines[at + 2:] == ([lines[at + 2]] if has_torch else []) and ("qaev refine" in out) == has_torch
    assert "MB by bits" in out and "file MB" in out and "<- recommended" in out  # both sizes, named


def test_quiet_prints_only_the_final_line(tmp_path, capsys):
    assert _search(tmp_path, "--quiet") == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("\n") == 1 and out.startswith("wrote ")


def test_json_progress_is_one_object_per_line(tmp_path, capsys):
    assert _search(tmp_path, "--json-progress") == 0
    out, _ = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["start", "generation", "generation", "generation", "done"]
    gens = events[1:-1]
    assert [e["gen"] for e in gens] == [1, 2, 3] and gens[-1]["eta_s"] == 0
    assert {"evaluations", "cache_hits", "front_size", "hypervolume", "elapsed_s", "best"} <= set(gens[0])
    assert events[-1]["points"] >= 1


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal_shows_counts_and_best_points():
    err = _Terminal()
    progress = make_progress("bar", total_generations=2, objectives=["acc_drop", "size_mb"], err=err, out=io.StringIO())
    progress.start("starting")
    progress.begin("searching")
    front = [Record(key="a", objectives={"acc_drop": 5.0, "size_mb": 0.01}, metric=90.0, config={}),
             Record(key="b", objectives={"acc_drop": 0.0, "size_mb": 0.02}, metric=95.0, config={})]
    for gen in (1, 2):
        progress(Generation(gen=gen, evaluations=6 * gen, cache_hits=gen - 1, front_size=2, hypervolume=0.5,
                            elapsed_s=float(gen), predictor_rank=None if gen == 1 else 0.834), front)
    progress.close()
    text = err.getvalue()
    assert "gen 2/2" in text and "evals 12" in text and "hits 1" in text and "5/0.01" in text
    assert "HV 0.5000  0:01<" in text and "HV 0.5000  pred. rank 0.83  0:02<" in text  # no rank: none shown


def test_best_tradeoffs_spread_along_the_second_objective():
    front = [Record(key=str(i), objectives={"acc_drop": 10.0 - i, "size_mb": 0.01 * i}, metric=None, config={})
             for i in range(10)]
    best = best_tradeoffs(front, ["acc_drop", "size_mb"], levels=4)
    assert [b["objectives"]["size_mb"] for b in best] == [0.0, 0.03, 0.06, 0.09]


def test_every_abbreviation_of_the_progress_line_is_explained_once():
    err = io.StringIO()
    progress = make_progress("bar", total_generations=2, objectives=["acc_drop", "size_mb"], err=err, out=io.StringIO())
    progress.begin("searching")
    front = [Record(key="a", objectives={"acc_drop": 5.0, "size_mb": 0.01}, metric=90.0, config={})]
    for gen in (1, 2):
        progress(Generation(gen=gen, evaluations=6 * gen, cache_hits=0, front_size=1, hypervolume=0.5,
                            elapsed_s=float(gen), predictor_rank=0.5), front)
    lines = err.getvalue().splitlines()
    legends = [line for line in lines if line.startswith("progress line: ")]
    assert len(legends) == 1 and lines.index(legends[0]) < min(i for i, x in enumerate(lines) if x.startswith("gen "))
    line = next(x for x in lines if x.startswith("gen 2/2"))
    for word in ("gen", "evals", "hits", "front", "HV", "pred. rank", "best"):
        assert word in line and f"{word}: " in legends[0], word
    for short, name in (("drop", "acc_drop"), ("MB", "size_mb")):
        assert f"({short}/" in line or f"/{short})" in line
        assert f"{short} = {name}" in legends[0]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_slow_candidates_print_progress_within_a_generation_at_most_every_30_s():
    clock, err = _Clock(), io.StringIO()
    progress = make_progress("bar", total_generations=3, err=err, out=io.StringIO(), clock=clock)
    for done in range(1, 21):
        clock.now += 10.0
        progress.candidate(done, 20, 10.0)
    lines = err.getvalue().splitlines()
    assert lines[0] == "gen 1: candidate 1/20, 10 s each, ~3:10 left in this generation"
    assert [line.split()[3] for line in lines] == ["1/20,", "4/20,", "7/20,", "10/20,", "13/20,", "16/20,", "19/20,"]


def test_fast_candidates_print_nothing_between_generations():
    err = io.StringIO()
    progress = make_progress("bar", total_generations=3, err=err, out=io.StringIO(), clock=_Clock())
    for done in range(1, 21):
        progress.candidate(done, 20, 0.5)
    assert err.getvalue() == ""


def test_candidate_events_in_json_mode_name_the_next_generation():
    out = io.StringIO()
    progress = make_progress("json", total_generations=3, out=out, err=io.StringIO(), clock=_Clock())
    progress(Generation(gen=1, evaluations=6, cache_hits=0, front_size=2, hypervolume=0.5, elapsed_s=1.0), [])
    progress.candidate(2, 6, 4.0)
    event = json.loads(out.getvalue().splitlines()[-1])
    assert event == {"event": "candidate", "gen": 2, "done": 2, "total": 6, "each_s": 4.0, "generation_left_s": 16.0}


def test_with_a_time_budget_the_eta_is_the_budget_left_not_the_generation_cap():
    clock, err = _Clock(), io.StringIO()
    progress = make_progress("bar", total_generations=10_000, err=err, out=io.StringIO(), clock=clock)
    progress.deadline = clock.now + 125.0
    progress(Generation(gen=1, evaluations=6, cache_hits=0, front_size=2, hypervolume=0.5, elapsed_s=418.0), [])
    assert err.getvalue().startswith("gen 1  evals 6") and "6:58<2:05" in err.getvalue()


def test_the_problem_reports_each_candidate_it_measures():
    from qaev.problems import get_problem

    problem = get_problem("digits", eval=64)
    seen = []
    problem.on_candidate = lambda done, total, seconds: seen.append((done, total, seconds >= 0))
    configs = [problem.space.decode(problem.space.encode_uniform(w_bits=b, act="float")) for b in (8, 4, 2)]
    problem.evaluate_many(configs + configs[:1])  # the repeat is answered by the memo, not measured
    assert seen == [(1, 3, True), (2, 3, True), (3, 3, True)]
