"""The problem registry: problem name -> the module that defines it (its ``SPEC``, a
:class:`~qaev.data.parts.ProblemSpec`). The registry only lists them; adding a problem is
one module and one line here (``tests/problems/test_problem_contract.py`` checks each)."""
from __future__ import annotations

from importlib import import_module
from types import MappingProxyType
from typing import Mapping

from qaev.data.parts import Parts, ProblemSpec
from qaev.errors import ConfigError

__all__ = ["PROBLEMS", "problem_spec", "list_problems", "problem_parts", "problem_model_path"]

PROBLEMS: Mapping[str, str] = MappingProxyType({
    "digits": "qaev.problems.digits",
    "efficientnet-lite0": "qaev.problems.lite0",
    "efficientnet-lite0-heldout": "qaev.problems.lite0_heldout",
    "minilm-l6-stsb": "qaev.problems.minilm_stsb",
    "llama-pydocs": "qaev.problems.llama_pydocs",
})


def problem_spec(name: str) -> ProblemSpec:
    """The spec of problem ``name``.

    Raises:
        ConfigError: no problem has that name.
    """
    if name not in PROBLEMS:
        raise ConfigError(f"problem {name!r} is not one of {', '.join(PROBLEMS)}")
    return import_module(PROBLEMS[name]).SPEC


def list_problems() -> list[tuple[str, str]]:
    """(name, description) of every registered problem."""
    return [(name, problem_spec(name).description) for name in PROBLEMS]


def problem_parts(name: str, **options) -> Parts:
    """Model, data and metric of problem ``name``."""
    return problem_spec(name).parts(**options)


def problem_model_path(name: str):
    """The float model file of problem ``name`` (exported on first use), no data loaded."""
    return problem_spec(name).model_path()
