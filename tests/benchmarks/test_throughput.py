"""benchmarks/throughput.py on digits: every row and the search comparison, measured in one run."""
import json
import math

from tests.paths import load_benchmark


def test_rows_and_search_comparison_are_reported(tmp_path, capsys):
    out = tmp_path / "tp.json"
    argv = ["--problem", "digits", "--candidates", "6", "--rows", "b,p,c", "--search-pop", "6", "--search-gens", "2",
            "--finish", "end", "--repeat", "2", "--json", str(out)]
    assert load_benchmark("throughput").main(argv) == 0
    results = json.loads(out.read_text())["results"]
    for row in ("qaev sequential", "qaev prefetch", "qaev caches+staged"):
        figures = results[row]
        assert figures["evals_per_min"] > 0 and math.isfinite(figures["overhead_ratio"])
        assert figures["in_run_overhead"] > 0
    search = results["search"]
    assert set(search) >= {"full", "caches+staged", "time_ratio", "hv_ratio", "fixed_cost_floor"}
    assert search["full"]["stopped_early"] == 0 and search["caches+staged"]["evaluations"] > 0
    assert len(results["search_repeats"]) == 2
    printed = capsys.readouterr().out
    assert "(p) qaev," in printed and "staged / full over 2 runs" in printed
