"""The search: the space of configs (:mod:`.space`), the pymoo problem (:mod:`.problem`),
its objectives, the layer-aware operators and :func:`minimize`.

The names below are loaded on first use, so importing one submodule does not import the
whole search.
"""
from importlib import import_module

_EXPORTS = {
    "Generation": "qaev.search.optimize",
    "SearchResult": "qaev.search.optimize",
    "feasible_front": "qaev.search.optimize",
    "make_algorithm": "qaev.search.optimize",
    "minimize": "qaev.search.optimize",
    "QuantizationProblem": "qaev.search.problem",
    "SearchSpace": "qaev.search.space",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'qaev.search' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
