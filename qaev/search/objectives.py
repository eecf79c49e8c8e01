"""The objectives a search can minimise, each saying whether it is measured or estimated."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import onnx

from qaev.config import QuantConfig
from qaev.errors import ConfigError
from qaev.model.layers import LayerInfo

__all__ = ["Objective", "OBJECTIVES", "CONSTRAINTS", "check_objectives", "model_bytes", "other_bytes", "host_latency_ms"]


@dataclass(frozen=True)
class Objective:
    """One objective.

    Attributes:
        name: registry key (also the key in ``front.json``).
        kind: ``measured`` (run with ONNX Runtime on data), ``exact`` (counted) or
            ``estimated`` (analytic hardware table).
        unit: unit of the value.
        needs_hardware: whether a hardware table is required.
    """

    name: str
    kind: str
    unit: str
    needs_hardware: bool = False


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("acc_drop", "measured", "metric points lost vs float"),
        Objective("size_mb", "exact", "MB of weights incl. scales and zero points"),
        Objective("est_latency_ms", "estimated", "ms (analytic roofline)", needs_hardware=True),
        Objective("est_energy_mj", "estimated", "mJ (analytic)", needs_hardware=True),
        Objective("host_latency_ms", "measured", "ms median on this host (ONNX Runtime)"),
    )
}

#: Constraint name -> the objective it bounds.
CONSTRAINTS = {"max_drop": "acc_drop", "max_size_mb": "size_mb", "max_latency_ms": "est_latency_ms",
               "max_energy_mj": "est_energy_mj", "max_host_latency_ms": "host_latency_ms"}


def check_objectives(names, constraints: Mapping[str, float], *, has_hardware: bool) -> None:
    """Validate objective and constraint names.

    Raises:
        ConfigError: an unknown name, a duplicate, or a hardware objective without a table.
    """
    names = list(names)
    if not names:
        raise ConfigError("objectives: at least one is needed")
    for name in names:
        if name not in OBJECTIVES:
            raise ConfigError(f"objectives: {name!r} is not one of {', '.join(OBJECTIVES)}")
        if OBJECTIVES[name].needs_hardware and not has_hardware:
            raise ConfigError(f"objectives: {name!r} is an estimate from a hardware table; pass --hardware TARGET")
    if len(set(names)) != len(names):
        raise ConfigError(f"objectives: duplicates in {names}")
    for name in constraints:
        if name not in CONSTRAINTS:
            raise ConfigError(f"constraints: {name!r} is not one of {', '.join(CONSTRAINTS)}")
        if OBJECTIVES[CONSTRAINTS[name]].needs_hardware and not has_hardware:
            raise ConfigError(f"constraints: {name!r} bounds an estimate; pass --hardware TARGET")


def other_bytes(proto: onnx.ModelProto, layers: list[LayerInfo]) -> int:
    """Bytes of the initializers of ``proto`` that are no layer's weight (biases, norms)."""
    weights = {layer.weight for layer in layers if layer.weight}
    return sum(onnx.numpy_helper.to_array(init).nbytes for init in proto.graph.initializer if init.name not in weights)


def model_bytes(layers: list[LayerInfo], config: QuantConfig, other_bytes: int) -> int:
    """Exact weight storage: every layer's weight at its bits (with scales and zero points)
    plus every other initializer (biases, norms) as stored in the float model."""
    from qaev.quantize.sizes import weight_bytes

    return other_bytes + sum(weight_bytes(layer, config.layer(layer.name)) for layer in layers)


def host_latency_ms(model: onnx.ModelProto, feed: Mapping[str, np.ndarray], *, repeats: int = 10, warmup: int = 2,
                    threads: int = 1) -> float:
    """Median wall time of one inference on ``feed`` in ONNX Runtime on this host (measured)."""
    from qaev.model.session import make_session

    session = make_session(model, threads=threads)
    for _ in range(warmup):
        session.run(None, dict(feed))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, dict(feed))
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)
