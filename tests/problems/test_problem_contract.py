"""The contract every registered problem satisfies (one module exporting SPEC + one registry line)."""
import importlib

import pytest

from qaev.data.parts import Parts, ProblemSpec
from qaev.problems import PROBLEMS, list_problems, problem_spec


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_every_entry_names_a_module_exporting_its_spec(name):
    module = importlib.import_module(PROBLEMS[name])
    spec = problem_spec(name)
    assert module.SPEC is spec and isinstance(spec, ProblemSpec) and spec.name == name
    assert spec.description and callable(spec.parts) and callable(spec.model_path)


def test_listing_reads_every_spec():
    assert [name for name, _ in list_problems()] == list(PROBLEMS)


def test_the_bundled_problem_builds_its_parts_with_disjoint_splits():
    parts = problem_spec("digits").parts(calib=50, eval=60)
    assert isinstance(parts, Parts) and parts.metric == "top1"
    assert len(parts.calib) == 50 and len(parts.eval) == 60
    assert problem_spec("digits").model_path().is_file()
