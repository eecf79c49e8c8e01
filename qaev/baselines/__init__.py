"""The methods qaev is measured against, each on the problem's evaluator and store, each
counting the full evaluations it spends (see ``benchmarks/compare.py``)."""
from qaev.baselines.budget import BudgetExhausted, EvaluationBudget
from qaev.baselines.greedy import greedy_baseline, greedy_path
from qaev.baselines.ilp import ilp_baseline, solve_allocation
from qaev.baselines.ort_tools import ORT_TOOLS, initializer_bytes, ort_baseline
from qaev.baselines.random_search import random_baseline
from qaev.baselines.result import MethodResult, Point
from qaev.baselines.uniform import UNIFORM_SETTINGS, uniform_baseline

__all__ = [
    "BudgetExhausted",
    "EvaluationBudget",
    "MethodResult",
    "ORT_TOOLS",
    "Point",
    "UNIFORM_SETTINGS",
    "greedy_baseline",
    "greedy_path",
    "ilp_baseline",
    "initializer_bytes",
    "ort_baseline",
    "random_baseline",
    "solve_allocation",
    "uniform_baseline",
]
