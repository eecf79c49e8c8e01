"""Initial population: uniform anchors, sensitivity-informed mixes, random fill."""
from __future__ import annotations

import numpy as np
from pymoo.core.sampling import Sampling

from qaev.search.bracket import LoweringPath
from qaev.sensitivity.layer_costs import COSTS, layer_costs
from qaev.sensitivity.lowering import greedy_path, spread
from qaev.sensitivity.proxy import weight_error_table
from qaev.search.width_rows import allowed_acts, uniform_row, weight_only_act

__all__ = ["QuantSampling", "path_rows", "lowering_path"]

# (weight bits, activation) of the uniform rows every first population starts with; an
# activation the space lacks becomes its nearest allowed one (duplicates dropped), except
# dynamic int8, seeded only where allowed and last, so other spaces seed as they did.
_ANCHORS = ((8, "a8"), (4, "a8"), (8, "float"), (4, "float"))
_DYNAMIC_ANCHOR = (8, "dyn8")


class QuantSampling(Sampling):
    """Seeds the population with the configurations people try by hand, then informed
    mixes, then random genomes.

    1. Uniform W8A8 and W4A8, weight-only 8/4-bit and dynamic int8 with 8-bit weights,
       those the space allows (dynamic int8 is the fastest model ONNX Runtime runs on
       many CPUs, so a latency search starts from it), weight-only at the lowest
       width the space allows, and block-wise 4-bit weight-only where candidates run it
       as ``MatMulNBits`` (``nbits_accuracy`` 1-4).
    2. Sensitivity-informed. When the problem carries a measured sensitivity
       (``problem.sensitivity``: a drop table from ``qaev sensitivity`` or the output
       noise of :func:`~qaev.sensitivity.proxy.output_noise_table`), points
       evenly spread along the greedy lowering path over it (:func:`qaev.sensitivity.lowering.greedy_path`:
       from every layer at the highest width, lower the layer that costs least harm per
       unit of the problem's first cost objective saved), weight-only where the space
       allows it. Otherwise, for a sweep of thresholds, each layer takes the fewest weight
       bits whose relative weight error (free, no data) stays under the threshold.
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
        dynamic = (_DYNAMIC_ANCHOR,) if _DYNAMIC_ANCHOR[1] in allowed_acts(space) else ()
        lowest = min((b for b in space.w_bits if b is not None), default=None)
        low = ((lowest, "float"),) if lowest is not None else ()
        anchors = [space.encode_uniform(w_bits=b, act=a) for b, a in _ANCHORS + dynamic + low]
        anchors += _nbits_anchor(space)
        rows = []
        for row in anchors:
            if not any(np.array_equal(row, r) for r in rows):
                rows.append(row)
        rows = rows[:n_samples]
        n_informed = min(int(round(self.informed * n_samples)), n_samples - len(rows))
        measured = getattr(problem, "sensitivity", None)
        if n_informed > 0 and measured is not None:
            rows.extend(path_rows(problem, np.asarray(measured, float), n_informed))
        elif n_informed > 0:
            errors = weight_error_table(problem)
            for t in np.quantile(errors[np.isfinite(errors)], np.linspace(0.05, 0.95, n_informed)):
                row = random_state.integers(0, upper + 1)
                for i in range(len(space.searchable)):
                    ok = np.flatnonzero(errors[i] <= t)
                    row[space.genome.index(i, "w_bits")] = ok.min() if len(ok) else len(space.w_bits) - 1
                rows.append(row)
        while len(rows) < n_samples:
            rows.append(random_state.integers(0, upper + 1))
        return np.array(rows[:n_samples], dtype=int)


def _nbits_anchor(space) -> list[np.ndarray]:
    """Uniform 4-bit block-wise weight-only, where candidates run such layers as
    ``MatMulNBits`` (``nbits_accuracy`` 1-4) and the space allows it: the fused kernel is
    reached only when a layer's width, activation and granularity change together."""
    blocks = [g for g in space.granularities if g.block_size is not None]
    if not (space.nbits_accuracy and blocks and "float" in allowed_acts(space) and 4 in space.w_bits):
        return []
    return [space.encode_uniform(w_bits=4, act="float", granularity=blocks[0])]


def path_rows(problem, sensitivity: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` genomes evenly spread along the greedy lowering path over ``sensitivity``
    (``[searchable layer, w_bits index]``, larger = worse), the all-highest start left
    out, the all-lowest end kept; every other gene at the all-highest uniform setting.

    Raises:
        ConfigError: ``sensitivity`` does not have one row per searchable layer and one
            column per allowed width.
    """
    path, widths = _lowering(problem, sensitivity)
    return spread([path.row(w) for w in widths[1:]], n)


def lowering_path(problem, sensitivity: np.ndarray) -> LoweringPath:
    """The greedy lowering path of :func:`path_rows` as steps and costs."""
    return _lowering(problem, sensitivity)[0]


def _lowering(problem, sensitivity: np.ndarray) -> tuple[LoweringPath, list[np.ndarray]]:
    from qaev.errors import ConfigError

    space = problem.space
    shape = (len(space.searchable), len(space.w_bits))
    if sensitivity.shape != shape:
        raise ConfigError(f"sensitivity: expected a {shape[0]} x {shape[1]} table (searchable layers x widths "
                          f"{list(space.w_bits)}), got {sensitivity.shape[0]} x "
                          f"{sensitivity.shape[1] if sensitivity.ndim > 1 else 1}")
    act = weight_only_act(space)
    cost = next((o for o in problem.objectives if o in COSTS), "size_mb")
    costs = layer_costs(problem, cost=cost, act=act)
    widths = greedy_path(sensitivity, costs)
    base = uniform_row(space, w_index=shape[1] - 1, act=act)
    return LoweringPath.of(widths, costs, base, space.genome), widths
