"""Ready-made quantization problems on real models and data (installed as ``qaev.problems``).

Like pymoo's ``get_problem``: ``get_problem("digits")`` returns a ready
:class:`~qaev.search.problem.QuantizationProblem`.
"""
from __future__ import annotations

from qaev.problems.registry import PROBLEMS, get_problem, list_problems, problem_model_path, problem_parts

__all__ = ["PROBLEMS", "get_problem", "list_problems", "problem_model_path", "problem_parts"]
