"""Counting full evaluations so every method runs on the same budget."""
from __future__ import annotations

import numpy as np

from qaev.config import QuantConfig
from qaev.runtime.store import Record

__all__ = ["EvaluationBudget", "BudgetExhausted", "charged_evaluations"]


class BudgetExhausted(Exception):
    """A method asked for one full evaluation more than its budget allows."""


class EvaluationBudget:
    """Evaluates configs through ``problem.evaluate_config`` and counts each distinct config
    once, whether the store already held it or not, so sharing a store never makes one
    method cheaper than another.

    Args:
        problem: the :class:`~qaev.search.problem.QuantizationProblem`.
        limit: most distinct configs (None: unlimited).

    Example:
        >>> from qaev.problems import get_problem
        >>> problem = get_problem("digits", eval=50)
        >>> budget = EvaluationBudget(problem, 1)
        >>> _ = budget.evaluate(problem.space.decode(problem.space.encode_uniform(w_bits=8, act="a8")))
        >>> budget.used, budget.remaining
        (1, 0)
    """

    def __init__(self, problem, limit: int | None) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"budget: expected a non-negative limit, got {limit}")
        self.problem = problem
        self.limit = limit
        self._keys: dict[str, None] = {}

    @property
    def used(self) -> int:
        """Distinct configs evaluated so far."""
        return len(self._keys)

    @property
    def remaining(self) -> int | None:
        """Evaluations left (None: unlimited)."""
        return None if self.limit is None else self.limit - self.used

    def seen(self, config: QuantConfig) -> bool:
        """Whether ``config`` was already counted (evaluating it again is free)."""
        return config.key() in self._keys

    def evaluate(self, config: QuantConfig) -> Record:
        """The record of ``config``.

        Raises:
            BudgetExhausted: ``config`` is new and the budget is spent.
        """
        key = config.key()
        if key not in self._keys:
            if self.limit is not None and self.used >= self.limit:
                raise BudgetExhausted(f"budget of {self.limit} evaluations spent")
            self._keys[key] = None
        return self.problem.evaluate_config(config)


def charged_evaluations(passes: float) -> int:
    """Whole evaluations charged for ``passes`` of the evaluation data spent outside full
    evaluations (probes on a few samples), rounded up."""
    return int(np.ceil(passes - 1e-9))
