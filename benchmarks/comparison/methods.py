"""Every method of the comparison by name, each run on a fresh problem."""
from __future__ import annotations

import time

from qaev.baselines import greedy_baseline, ilp_baseline, ort_baseline, random_baseline, uniform_baseline
from qaev.baselines.result import MethodResult
from qaev.runtime.search_run import default_tolerance

from comparison.searches import qaev_informed, qaev_screened, qaev_search
from comparison.splits import Setup
from comparison.timed import qaev_default

METHODS = ("qaev", "qaev_screened", "qaev_informed", "qaev_default", "uniform", "ort_tools", "greedy", "ilp",
           "random")
#: The methods of a ``--time`` comparison unless ``--methods`` says otherwise.
TIMED = ("qaev_default", "uniform", "ort_tools", "greedy", "ilp", "random")


def run_method(setup: Setup, method: str, *, budget: int, seed: int, pop: int | None,
               act: str = "a8", seconds: float | None = None, refine: bool = True) -> MethodResult:
    """One method on a fresh problem (``act``: the allocation baselines' activation
    setting). With ``seconds``, every method stops starting candidates after that much
    wall time (its probes included); ``budget`` is then the evaluations that time affords,
    which the baselines plan with."""
    if seconds is not None and method == "qaev_default":  # bounded by the default tolerance, as qaev search is
        problem = setup.problem(constraints={"max_drop": default_tolerance(setup.search.metric.name)})
        problem.validator = setup.validation  # chooses there, as qaev search does
        return qaev_default(problem, seconds=seconds, seed=seed, pop=pop, refine=refine)
    problem = setup.problem()
    if seconds is not None:
        problem.deadline = time.monotonic() + seconds
    cost = "size_mb" if "size_mb" in setup.objectives else next(
        (o for o in setup.objectives if o.startswith("est_")), "size_mb")
    if method == "qaev":
        return qaev_search(problem, budget=budget, seed=seed, pop=pop)
    if method == "qaev_screened":
        return qaev_screened(setup, budget=budget, seed=seed, pop=pop)
    if method == "qaev_informed":
        return qaev_informed(setup, budget=budget, seed=seed, pop=pop)
    if method == "uniform":
        return uniform_baseline(problem, budget=budget)
    if method == "ort_tools":
        return ort_baseline(problem, setup.parts.calib, budget=budget)
    if method == "greedy":
        return greedy_baseline(problem, budget=budget, cost=cost, act=act)
    if method == "ilp":
        return ilp_baseline(problem, budget=budget, cost=cost, act=act)
    return random_baseline(problem, budget=budget, seed=seed)
