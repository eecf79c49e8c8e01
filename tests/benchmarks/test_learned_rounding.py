"""benchmarks/learned_rounding.py --summary: variants named by their options or by a label,
paired differences over the whole evaluation set and over its two seeded halves."""
import json

import numpy as np

from tests.paths import load_benchmark

bench = load_benchmark("learned_rounding")


def _row(seed, items, **options):
    return {"problem": "toy", "seed": seed, "acts": "float", "method": "block:500", "drop": float(np.mean(items)),
            "se": 0.1, "fit_min": 1.0, "items": list(items)} | options


def test_variants_are_named_by_the_options_that_are_not_the_defaults():
    assert bench.variant_of(_row(0, [0.0], output_loss="kl", start="gptq-bc", reg_weight=1000.0)) == "block:500/kl"
    assert bench.variant_of(_row(0, [0.0], start="nearest", reg_weight=10.0)) == "block:500/start=nearest/reg=10"
    assert bench.variant_of(_row(0, [0.0], start="nearest") | {"label": "old"}) == "old"
    assert bench.variant_of(_row(0, [0.0], output_loss="kl") | {"method": "gptq"}) == "gptq"
    assert bench.variant_of(_row(0, [0.0], mix=0.0, max_layers=6)) == "block:500/mix=0/layers=6"


def test_labels_from_files_and_paired_halves(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = [_row(s, rng.choice([0.0, 100.0], size=40)) for s in (0, 1)]
    # the second variant loses one item more on every seed: its paired difference is +100/40 = +2.5 points
    worse = [r | {"items": r["items"][:-1] + [r["items"][-1] + 100.0]} for r in base]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in base))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in worse))
    rows = bench.read_rows([f"first={tmp_path / 'a.jsonl'}", f"second={tmp_path / 'b.jsonl'}"])
    bench.summary(rows)
    bench.halves(rows)
    out = capsys.readouterr().out
    assert "second - first: +2.50 +-" in out and "2 seed(s) (+2.50, +2.50)" in out
    assert "items second gets wrong / right where first does not, per seed: 1/0, 1/0" in out
    # the one differing item falls in one half of each seed: +5.00 there, 0 in the other, on average +2.50
    choose, report = (float(x.split()[0]) for x in out.split("choosing half ")[1].split("reporting half ")[:2])
    assert choose + report == 5.0 and {choose, report} <= {0.0, 2.5, 5.0}


def test_class_score_losses_read_the_true_class_and_the_float_softmax():
    reference = np.log(np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]))
    same = bench.class_score_losses(reference, reference.copy(), np.array([0, 1]))
    assert same["nll_items"] == [0.0, 0.0] and same["kl_items"] == [0.0, 0.0]
    moved = np.log(np.array([[0.25, 0.5, 0.25], [0.25, 0.5, 0.25]]))  # item 0 loses half its true-class mass
    got = bench.class_score_losses(reference, moved, np.array([0, 1]))
    assert got["nll_items"] == [round(np.log(2), 6), 0.0] and got["kl_items"][0] > 0 == got["kl_items"][1]
    assert bench.class_score_losses(reference, moved, None) == {}  # no labels: nothing to read


def test_the_summary_pairs_the_continuous_losses_in_millinats(capsys):
    rows = [_row(0, [0.0, 0.0], nll_items=[0.1, 0.3], kl_items=[0.0, 0.0]) | {"label": "a"},
            _row(0, [0.0, 0.0], nll_items=[0.2, 0.4], kl_items=[0.01, 0.03]) | {"label": "b"}]
    bench.summary(rows)
    out = capsys.readouterr().out
    assert "b - a: true-class NLL +100.0 +-0.0 millinats paired" in out and "KL from float +20.0" in out
    assert "(+20.0); lower on 0% of the items" in out


def test_mirror_rows_are_named_as_their_own_variant():
    assert bench.variant_of(_row(0, [0.0], output_loss="kl", mirror=True)) == "block:500/kl/mirror"
    assert bench.variant_of(_row(0, [0.0], output_loss="kl", learn_seed=100)) == "block:500/kl/learn-seed=100"
    assert bench.build_parser().parse_args(["--learn-seed", "100"]).learn_seed == 100
    assert bench.calib_reading(None, model=None) == {}


def test_the_summary_says_which_machines_the_rows_ran_on():
    machine = {"cpu": "Some CPU (family 6, model 1)", "torch": "2.13.0", "torch_cpu": "AVX2", "onnxruntime": "1.0"}
    rows = [{"machine": machine}, {"machine": machine}, {}]
    line = bench.machines_line(rows)
    assert line == ("measured on: Some CPU (family 6, model 1), torch 2.13.0 (AVX2), onnxruntime 1.0 (2 rows); "
                    "not recorded (1 row)")


def test_the_first_and_last_layers_at_8_bits_are_their_own_variant():
    from qaev.problems import get_problem
    from qaev.quantize import uniform_config

    layers = get_problem("digits", eval=16).quantizer.layers
    config = bench._ends_8bit(uniform_config(layers, bench._base("float")), layers)
    bits = [config.layers[layer.name].w_bits for layer in layers]
    assert bits[0] == bits[-1] == 8 and set(bits[1:-1]) == {4} and len(bits) >= 3
    assert bench.variant_of(_row(0, [0.0], output_loss="kl", ends_8bit=True)) == "block:500/kl/ends8"
    assert bench.build_parser().parse_args(["--ends-8bit"]).ends_8bit
