"""The objectives a search minimises, one module each behind a registry (:mod:`.registry`):
``acc_drop`` (measured), ``size_mb`` (exact), ``est_latency_ms`` and ``est_energy_mj``
(hardware-table estimates), ``host_latency_ms`` (measured on this machine)."""
from qaev.search.objectives.base import Kind, Objective
from qaev.search.objectives.registry import OBJECTIVE_MODULES, check_objectives, constraints, get_objective, objectives

__all__ = ["Kind", "Objective", "OBJECTIVE_MODULES", "check_objectives", "constraints", "get_objective", "objectives"]
