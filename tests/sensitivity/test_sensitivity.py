"""Per-layer sensitivity: probes through the store, the matrix the sampler reads, JSON, CLI."""
import json
import math

import numpy as np
import pytest

from qaev.config import QuantConfig
from qaev.errors import ConfigError
from qaev.search.operators import QuantSampling
from qaev.search.operators.sampling import path_rows
from qaev.problems import get_problem
from qaev.sensitivity.probes import SensitivityTable, layer_sensitivity


@pytest.fixture(scope="module")
def measured():
    problem = get_problem("digits", eval=200)
    return problem, layer_sensitivity(problem, bits=(2, 4, 8))


def test_probes_are_store_records_and_a_rerun_is_free(measured):
    problem, table = measured
    n_layers = len(problem.space.searchable)
    assert len(table.entries) == 3 * n_layers and problem.n_evaluated == 3 * n_layers
    for e in table.entries:
        assert problem.store.get(e.key).objectives["acc_drop"] == e.drop
    again = layer_sensitivity(problem, bits=(2, 4, 8))
    assert problem.n_evaluated == 3 * n_layers and again.entries == table.entries


def test_drop_equals_a_direct_build_and_measure(measured):
    problem, table = measured
    top = table.ranked()[0]  # the most sensitive layer at 2 bits
    cfg = QuantConfig.from_dict(problem.store.get(top.key).config)
    direct = problem.evaluator.measure(problem.quantizer.build(cfg)).value
    assert problem.evaluator.drop(direct) == pytest.approx(top.drop)
    assert len(cfg.layers) == 1 and cfg.layers[top.layer].w_bits == 2


def test_two_bits_hurt_more_than_eight(measured):
    problem, table = measured
    ranked = table.ranked()
    assert ranked[0].drop > 2.0 and ranked[0].drop >= ranked[-1].drop
    for name in table.layers:
        assert table.entry(name, 2).sqnr_db < table.entry(name, 4).sqnr_db < table.entry(name, 8).sqnr_db
        assert table.drop(name, 8) <= 0.5


def test_matrix_fills_unprobed_widths_pessimistically(measured):
    problem, table = measured
    m = table.matrix((2, 3, 4, 8, None))
    assert m.shape == (len(table.layers), 5) and np.isfinite(m).all()
    assert np.array_equal(m[:, 1], m[:, 0])  # 3 bits: as sensitive as 2
    assert np.all(m[:, 4] == 0.0)  # float weights lose nothing
    partial = layer_sensitivity(problem, bits=(2,), layers=[table.layers[0]])
    rows = partial.matrix((2, 4), layers=table.layers)
    assert np.all(rows[1:, 0] == rows[0, 0])  # unprobed layers take the column's worst


def test_json_round_trip_keeps_infinities(measured, tmp_path):
    problem, _ = measured
    table = layer_sensitivity(problem, bits=(None, 2), act="float", layers=[problem.space.searchable[0].name])
    assert math.isinf(table.entry(problem.space.searchable[0].name, None).sqnr_db)
    assert SensitivityTable.from_json(table.to_json()) == table
    with pytest.raises(ConfigError, match="schema"):
        SensitivityTable.from_json(json.dumps({"layers": []}))


def test_bad_options_are_refused(measured):
    problem, _ = measured
    with pytest.raises(ConfigError, match="act"):
        layer_sensitivity(problem, act="a7")
    with pytest.raises(ConfigError, match="searchable"):
        layer_sensitivity(problem, layers=["nope"])


def test_sampler_seeds_along_the_lowering_path_over_the_matrix(measured):
    problem, table = measured
    names = [layer.name for layer in problem.space.searchable]
    problem.sensitivity = table.matrix(problem.space.w_bits, layers=names)
    try:
        X = QuantSampling(informed=0.5)._do(problem, 10, random_state=np.random.default_rng(0))
        expected = path_rows(problem, problem.sensitivity, 5)
    finally:
        problem.sensitivity = None
    assert X.shape == (10, problem.space.n_var)
    informed = X[5:10]  # after the five uniform anchors
    assert np.array_equal(informed, np.array(expected))
    widths = informed[:, problem.space.genome.column("w_bits")]
    assert (np.diff(widths, axis=0) <= 0).all(), "each row lies further down one path: no layer is raised again"
    assert (widths[-1] == 0).all(), "the path ends with every layer at the fewest bits"
    fragile = int(np.argmax(table.matrix((2,), layers=names)[:, 0]))
    w2 = problem.space.w_bits.index(2)
    counts = [(widths[:, i] == w2).sum() for i in range(len(names))]
    assert counts[fragile] == min(counts), "the layer that loses most at 2 bits is lowered last"


def test_cli_writes_json_and_reuses_its_store(tmp_path, capsys):
    from qaev.cli.sensitivity import sensitivity

    args = ["--eval", "120", "--bits", "2,8", "--out", str(tmp_path / "s.json"), "--store", str(tmp_path / "m.jsonl")]
    sensitivity.main(args=args, standalone_mode=False)
    first = capsys.readouterr().out
    table = SensitivityTable.from_json((tmp_path / "s.json").read_text())
    assert table.bits == (2, 8) and table.n_eval == 120 and "10 probes measured" in first
    sensitivity.main(args=args, standalone_mode=False)
    assert "0 probes measured, 10 from the memo" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--bits"):
        sensitivity.main(args=["--bits", "2,x", "--no-cache"], standalone_mode=False)
