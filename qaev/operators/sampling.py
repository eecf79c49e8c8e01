"""Initial population: uniform anchors, sensitivity-informed mixes, random fill."""
from __future__ import annotations

import numpy as np
from pymoo.core.sampling import Sampling

from qaev.operators.sensitivity_proxy import weight_error_table
from qaev.space import GENES_PER_LAYER

__all__ = ["QuantSampling"]


class QuantSampling(Sampling):
    """Seeds the population with the configurations people try by hand, then informed
    mixes, then random genomes.

    1. Uniform W8A8 and W4A8 (and weight-only 8/4-bit where the space allows).
    2. Sensitivity-informed: for a sweep of error thresholds, each layer takes the fewest
       weight bits whose relative weight error (or measured sensitivity, when the problem
       carries one) stays under the threshold.
    3. Uniformly random genes for the rest.

    Args:
        informed: fraction of the population made by step 2.
    """

    def __init__(self, *, informed: float = 0.3) -> None:
        super().__init__()
        self.informed = informed

    def _do(self, problem, n_samples, *args, random_state=None, **kwargs):
        space = problem.space
        upper = space.upper()
        anchors = [space.encode_uniform(w_bits=b, act=a) for b, a in ((8, "a8"), (4, "a8"), (8, "float"), (4, "float"))]
        rows = []
        for row in anchors:
            if not any(np.array_equal(row, r) for r in rows):
                rows.append(row)
        rows = rows[:n_samples]
        n_informed = min(int(round(self.informed * n_samples)), n_samples - len(rows))
        if n_informed > 0:
            errors = getattr(problem, "sensitivity", None)
            errors = weight_error_table(problem) if errors is None else np.asarray(errors, float)
            for t in np.quantile(errors[np.isfinite(errors)], np.linspace(0.05, 0.95, n_informed)):
                row = random_state.integers(0, upper + 1)
                for i in range(len(space.searchable)):
                    ok = np.flatnonzero(errors[i] <= t)
                    row[GENES_PER_LAYER * i] = ok.min() if len(ok) else len(space.w_bits) - 1
                rows.append(row)
        while len(rows) < n_samples:
            rows.append(random_state.integers(0, upper + 1))
        return np.array(rows[:n_samples], dtype=int)
