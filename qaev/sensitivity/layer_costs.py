"""Per-layer cost of each allowed weight width: exact size or a hardware-table estimate
(what the greedy lowering path and the ILP allocation trade accuracy against)."""
from __future__ import annotations

import numpy as np

from qaev.errors import ConfigError
from qaev.search.width_rows import uniform_row

__all__ = ["layer_costs", "COSTS"]

#: Cost names a per-layer allocation can trade, and whether each is exact or estimated.
COSTS = {"size_mb": "exact", "est_latency_ms": "estimated", "est_energy_mj": "estimated"}


def layer_costs(problem, *, cost: str = "size_mb", act: str = "a8") -> np.ndarray:
    """``[searchable layer, w_bits index]`` -> cost of the layer at that width.

    ``size_mb`` is exact and additive over layers. Latency and energy come from the
    problem's hardware table for the uniform config at each width, read per layer: an
    additive approximation (precision-boundary conversions depend on the neighbours).

    Raises:
        ConfigError: unknown cost, or an estimated cost without a hardware table.
    """
    if cost not in COSTS:
        raise ConfigError(f"cost: {cost!r} is not one of {', '.join(COSTS)}")
    space = problem.space
    names = [layer.name for layer in space.searchable]
    table = np.zeros((len(names), len(space.w_bits)))
    if cost == "size_mb":
        from qaev.quantize.sizes import weight_bytes

        for j in range(len(space.w_bits)):
            config = space.decode(uniform_row(space, w_index=j, act=act))
            for i, layer in enumerate(space.searchable):
                table[i, j] = weight_bytes(layer, config.layer(layer.name)) / 1e6
        return table
    if problem.table is None:
        raise ConfigError(f"cost: {cost!r} is an estimate from a hardware table; the problem has none")
    from qaev.quantize.sizes import estimate_cost

    field = "est_latency_s" if cost == "est_latency_ms" else "est_energy_j"
    for j in range(len(space.w_bits)):
        report = estimate_cost(problem.quantizer.layers, space.decode(uniform_row(space, w_index=j, act=act)),
                               problem.table)
        per_layer = {row.name: getattr(row, field) * 1e3 for row in report.rows}
        table[:, j] = [per_layer[n] for n in names]
    return table
