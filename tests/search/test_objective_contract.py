"""The contract every registered objective satisfies (one registry line + one module)."""
import math

import pytest
from click.testing import CliRunner

from qaev.cli.search import search
from qaev.config import LayerConfig, QuantConfig
from qaev.problems import get_problem
from qaev.search.objectives import OBJECTIVE_MODULES, Kind, Objective, constraints, get_objective


@pytest.mark.parametrize("name", list(OBJECTIVE_MODULES))
def test_every_entry_names_a_module_whose_objective_matches(name):
    objective = get_objective(name)
    assert isinstance(objective, Objective) and objective.name == name
    assert type(objective).value is not Objective.value, f"{name} must compute its value"
    assert isinstance(objective.kind, Kind) and objective.unit
    assert objective.constraint.startswith("max_") and objective.help
    if objective.kind is Kind.ESTIMATED:  # a bound on an estimate says so in its name
        assert "est" in objective.constraint and objective.needs_hardware
    if objective.needs_metric or objective.quiet:
        assert objective.kind is Kind.MEASURED


def test_constraint_names_are_unique_and_each_has_a_cli_option():
    names = [get_objective(n).constraint for n in OBJECTIVE_MODULES]
    assert len(set(names)) == len(names) == len(constraints())
    help_text = CliRunner().invoke(search, ["--help"]).output
    for name in names:
        assert f"--{name.replace('_', '-')}" in help_text


@pytest.fixture(scope="module")
def problem():
    return get_problem("digits", eval=64, objectives=tuple(OBJECTIVE_MODULES), hardware="arm_dot")


def test_every_objective_gives_a_finite_value_for_a_candidate_and_the_float_model(problem):
    config = QuantConfig(layers={problem.space.searchable[0].name: LayerConfig(w_bits=4)})
    record = problem.evaluate_config(config)
    assert record.ok, record.error
    floats = problem.float_objectives()
    for name in OBJECTIVE_MODULES:
        assert math.isfinite(record.objectives[name]) and math.isfinite(floats[name])
    assert floats["acc_drop"] == 0.0
    assert record.objectives["size_mb"] < floats["size_mb"]


def test_a_bound_on_any_objective_becomes_a_pymoo_constraint(problem):
    bounded = get_problem("digits", eval=64, hardware="arm_dot",
                          constraints={o.constraint: 1e6 for o in constraints().values()})
    assert bounded.n_ieq_constr == len(constraints())
    record = bounded.evaluate_config(QuantConfig())
    assert all(v <= 0 for v in bounded.constraint_vector(record))
