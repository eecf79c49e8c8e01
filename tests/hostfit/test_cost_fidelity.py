"""benchmarks/cost_model_fidelity.py on digits: structure of the report (not its figure)."""
import json
import math

import pytest

from qaev.hardware import load_table
from qaev.quantize.sizes import estimate_cost
from qaev.hostfit.refit import fit_whole_model, with_values
from qaev.hostfit.timing import fidelity_configs, noise_quantizer, resolve_model
from tests.paths import load_benchmark


@pytest.fixture(scope="module")
def fidelity():
    return load_benchmark("cost_model_fidelity")


def test_benchmark_reports_twenty_configs_and_a_finite_spearman(fidelity, tmp_path, capsys):
    out = tmp_path / "fidelity.json"
    argv = ["--problem", "digits", "--configs", "20", "--repeats", "3", "--json", str(out)]
    assert fidelity.main(argv) == 0
    printed = capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert len(doc["rows"]) == 20 and len({r["key"] for r in doc["rows"]}) == 20
    assert math.isfinite(doc["spearman"]) and -1.0 <= doc["spearman"] <= 1.0
    assert doc["command"] == "python benchmarks/cost_model_fidelity.py " + " ".join(argv)
    assert doc["onnxruntime"] and doc["machine"] and doc["date"] and doc["hardware"] == "host"
    for row in doc["rows"]:
        assert row["measured_ms"] > 0 and row["est_latency_ms"] > 0 and row["executed"]
    labels = [r["label"] for r in doc["rows"]]
    assert labels[:3] == ["float", "W8A8", "W4A8"] and any(label.startswith("mix") for label in labels)
    assert f"$ {doc['command']}" in printed and "onnxruntime" in printed
    assert f"Spearman rank correlation (est_latency_ms vs measured), 20 configs: {doc['spearman']:.3f}" in printed


def test_fit_config_set_is_disjoint_and_refit_recovers_known_rates():
    model, _ = resolve_model("digits")
    layers = noise_quantizer(model, batch=1, seed=1).layers
    held_out = {c.key() for _, c in fidelity_configs(layers, 20, seed=0)}
    fit_set = fidelity_configs(layers, 12, seed=1, uniform=False, exclude=held_out)
    assert len(fit_set) == 12 and not held_out & {c.key() for _, c in fit_set}
    # Latencies made by a known table are refitted exactly (rates, conversions) from a wrong start.
    truth = load_table("host")
    samples = [("digits", layers, c, 1, estimate_cost(layers, c, truth).est_latency_ms / 1e3) for _, c in fit_set]
    start = with_values(truth, rates={"w8a8": 2 * truth.peak_macs_per_s["w8a8"].value},
                        act_conversion_time=3 * truth.act_conversion_time.value)
    table, info = fit_whole_model(samples, start, min_share=0.0)
    assert info["relative_rms"] < 1e-6
    for _, c in fit_set:
        assert estimate_cost(layers, c, table).est_latency_ms == pytest.approx(
            estimate_cost(layers, c, truth).est_latency_ms, rel=1e-6)
