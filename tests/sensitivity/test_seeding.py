"""Seeding a search from sensitivity: the output-noise probes, the file source, the CLI."""
import hashlib
import json
import math

import numpy as np
import pytest

from qaev.cli.main import main
from qaev.config import Rounding
from qaev.errors import ConfigError
from qaev.sensitivity.proxy import noise_probe_count, output_noise_table
from qaev.search.problem import QuantizationProblem
from qaev.problems import get_problem
from qaev.sensitivity.seeding import SensitivitySource, load_sensitivity
from qaev.sensitivity.probes import SensitivityTable, layer_sensitivity, output_sqnr
from qaev.search.space import SearchSpace


@pytest.fixture(scope="module")
def problem():
    return get_problem("digits", eval=200)


@pytest.fixture(scope="module")
def noise(problem):
    seen = []
    table = output_noise_table(problem, samples=16, progress=lambda done, total: seen.append((done, total)))
    return table, seen


def test_noise_table_shape_bounds_and_progress(problem, noise):
    table, seen = noise
    n_layers, n_widths = len(problem.space.searchable), len(problem.space.w_bits)
    assert table.shape == (n_layers, n_widths)
    assert ((table >= 0) & (table <= 1)).all()
    assert np.allclose(table[:, -1], table[0, -1]), "the highest column is the one all-highest base"
    assert seen[-1] == (noise_probe_count(problem), noise_probe_count(problem)) == (len(seen), len(seen))
    assert problem.n_evaluated == 0, "probes measure outputs, not the metric: no evaluation is spent"


def test_fewer_bits_make_more_output_noise(noise):
    table, _ = noise
    assert (table[:, 0] > table[:, -1]).all()
    assert (np.diff(table, axis=1) <= 1e-12).mean() >= 0.9  # noise falls as widths grow, almost everywhere


def test_a_noise_entry_is_the_sqnr_of_that_one_config(problem, noise):
    table, _ = noise
    from qaev.search.width_rows import uniform_row, with_widths

    space = problem.space
    widths = np.full(len(space.searchable), len(space.w_bits) - 1)
    widths[2] = 0
    config = space.decode(with_widths(uniform_row(space, w_index=len(space.w_bits) - 1, act="float"), widths,
                                      space.genome))
    assert table[2, 0] == pytest.approx(10 ** (-output_sqnr(problem, config, 16) / 10))


def test_file_source_reads_a_sensitivity_table(problem, tmp_path):
    names = [layer.name for layer in problem.space.searchable]
    table = layer_sensitivity(problem, bits=(2, 8), sqnr_samples=0, layers=names[:2])
    path = tmp_path / "sens.json"
    path.write_text(table.to_json())
    matrix = load_sensitivity(problem, str(path))
    assert np.array_equal(matrix, table.matrix(problem.space.w_bits, layers=names))
    source = SensitivitySource.parse(str(path))
    assert source.settings == {"file_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert SensitivitySource.parse("noise:8").settings == {"noise_samples": 8}
    path.write_text("changed after parsing")  # the source keeps the bytes it read and hashed
    assert np.array_equal(load_sensitivity(problem, source), matrix)

    foreign = SensitivityTable(**{**table.__dict__, "model_sha256": "0" * 64})
    path.write_text(foreign.to_json())
    with pytest.raises(ConfigError, match="another model"):
        load_sensitivity(problem, str(path))
    elsewhere = SensitivityTable(**{**table.__dict__, "layers": ("nope",),
                                    "entries": tuple(e.__class__(**{**e.__dict__, "layer": "nope"})
                                                     for e in table.entries)})
    path.write_text(elsewhere.to_json())
    with pytest.raises(ConfigError, match="none of the .* searchable layers"):
        load_sensitivity(problem, str(path))


@pytest.mark.parametrize("spec, match", [("noise:0", "positive number"), ("noise:x", "positive number"),
                                         ("/no/such/file.json", "cannot read")])
def test_bad_specs_name_the_option(spec, match):
    with pytest.raises(ConfigError, match=f"--sensitivity: .*{match}"):
        SensitivitySource.parse(spec)


def test_probes_use_the_spaces_rounding_and_range(problem):
    space = SearchSpace(layers=problem.quantizer.layers, w_bits=(2, 8), acts=("float",), roundings=("gptq",),
                        weight_range="mse", symmetric=(False,))
    gptq = QuantizationProblem(problem.quantizer, problem.evaluator, space=space)
    name = space.searchable[0].name
    table = layer_sensitivity(gptq, bits=(2,), layers=[name], sqnr_samples=0)
    layer = gptq.store.get(table.entries[0].key).config["layers"][name]
    assert layer["rounding"] == Rounding.GPTQ.value and layer["weight_range"] == "mse" and layer["symmetric"] is False


def test_cli_search_seeded_by_noise_records_it_and_resume_must_match(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["search", "--problem", "digits", "--eval", "120", "--pop", "6", "--generations", "1", "--out", str(out),
            "--quiet"]
    assert main(args + ["--sensitivity", "noise:8"]) == 0
    assert json.loads((out / "settings.json").read_text())["spec"]["search"]["sensitivity"] == "noise:8"
    assert not math.isnan(json.loads((out / "front.json").read_text())["points"][0]["objectives"]["acc_drop"])
    capsys.readouterr()
    assert main(args + ["--resume", "--sensitivity", "noise:16"]) != 0
    err = capsys.readouterr().err
    assert "settings differ" in err and "sensitivity" in err
    assert main(args[:-3] + ["--out", str(tmp_path / "x"), "--sensitivity", "noise:0"]) != 0
    err = capsys.readouterr().err
    assert "--sensitivity" in err and "Traceback" not in err
