"""The objectives a search can minimise, by name.

Adding an objective is one module under :mod:`qaev.search.objectives` that defines
``OBJECTIVE`` (an :class:`~qaev.search.objectives.base.Objective`) and one line in
:data:`OBJECTIVE_MODULES`; the CLI's ``--max-...`` options and the checks below follow
from it, and ``tests/search/test_objective_contract.py`` checks every entry.
"""
from __future__ import annotations

from functools import cache
from importlib import import_module
from types import MappingProxyType
from typing import Mapping, Sequence

from qaev.errors import ConfigError

__all__ = ["OBJECTIVE_MODULES", "get_objective", "objectives", "constraints", "check_objectives"]

OBJECTIVE_MODULES: Mapping[str, str] = MappingProxyType({
    "acc_drop": "qaev.search.objectives.acc_drop",
    "size_mb": "qaev.search.objectives.size",
    "est_latency_ms": "qaev.search.objectives.est_latency",
    "est_energy_mj": "qaev.search.objectives.est_energy",
    "host_latency_ms": "qaev.search.objectives.host_latency",
})


def get_objective(name: str):
    """The :class:`~qaev.search.objectives.base.Objective` registered as ``name``.

    Raises:
        ConfigError: no objective has that name.
    """
    if name not in OBJECTIVE_MODULES:
        raise ConfigError(f"objectives: {name!r} is not one of {', '.join(OBJECTIVE_MODULES)}")
    return import_module(OBJECTIVE_MODULES[name]).OBJECTIVE


@cache
def objectives() -> tuple:
    """Every registered objective, in registry order."""
    return tuple(get_objective(name) for name in OBJECTIVE_MODULES)


def constraints() -> dict:
    """Constraint name (``max_...``) -> the objective it bounds."""
    return {o.constraint: o for o in objectives()}


def check_objectives(names: Sequence[str], bounds: Mapping[str, float], *, has_hardware: bool) -> None:
    """Validate objective names and constraint bounds.

    Raises:
        ConfigError: an unknown or duplicate name, a bound that is not a finite number, or
            a hardware objective or bound without a table.
    """
    names = list(names)
    if not names:
        raise ConfigError("objectives: at least one is needed")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: duplicates in {names}")
    for name in names:
        if get_objective(name).needs_hardware and not has_hardware:
            raise ConfigError(f"objectives: {name!r} is an estimate from a hardware table; pass --hardware TARGET")
    known = constraints()
    for name, bound in bounds.items():
        if name not in known:
            raise ConfigError(f"constraints: {name!r} is not one of {', '.join(known)}")
        if known[name].needs_hardware and not has_hardware:
            raise ConfigError(f"constraints: {name!r} bounds an estimate; pass --hardware TARGET")
        if (isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound
                or abs(bound) == float("inf")):
            raise ConfigError(f"constraints: {name} must be a finite number, got {bound!r}")
