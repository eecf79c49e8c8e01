"""``QuantizationProblem``: per-layer mixed precision as a pymoo Problem."""
from __future__ import annotations

import time
from typing import Mapping, Sequence

import numpy as np
from onnx import numpy_helper
from pymoo.core.problem import Problem

from qaev.config import QuantConfig
from qaev.errors import QaevError
from qaev.evaluate import Evaluator
from qaev.objectives import CONSTRAINTS, OBJECTIVES, check_objectives, host_latency_ms, model_bytes
from qaev.quantize import Quantizer
from qaev.space import SearchSpace
from qaev.store import EvaluationStore, Record

__all__ = ["QuantizationProblem", "FAILED"]

#: Objective value given to a candidate whose evaluation failed (never on a front).
FAILED = 1e9


class QuantizationProblem(Problem):
    """Choose, for every quantizable layer, weight bits, activations, granularity and
    symmetry (plus a global calibration method and scale rule), minimising the chosen
    objectives. Genes are integers (see :class:`~qaev.space.SearchSpace`); real-valued
    vectors from pymoo's default operators are rounded, so any pymoo algorithm runs.

    Args:
        quantizer: the engine of the float model, calibrated.
        evaluator: measures the metric on the evaluation split.
        space: what may be chosen (default: 2/4/8-bit weights, a8 or float activations).
        objectives: names from :data:`qaev.objectives.OBJECTIVES`.
        constraints: e.g. ``{"max_drop": 1.0}`` -> pymoo inequality constraints.
        hardware: a target table name, path or :class:`qaev.hardware.HardwareTable`
            (needed for ``est_latency_ms`` / ``est_energy_mj``).
        store: the evaluation memo (in memory by default).
        host_feed: the input of ``host_latency_ms`` (default: the first evaluation batch).

    Example:
        >>> from pymoo.algorithms.moo.nsga2 import NSGA2
        >>> from pymoo.optimize import minimize
        >>> from qaev.problems import get_problem
        >>> problem = get_problem("digits")
        >>> res = minimize(problem, NSGA2(pop_size=8), ("n_gen", 2), seed=1)
        >>> res.F.shape[1]
        2
    """

    def __init__(self, quantizer: Quantizer, evaluator: Evaluator, *, space: SearchSpace | None = None,
                 objectives: Sequence[str] = ("acc_drop", "size_mb"), constraints: Mapping[str, float] | None = None,
                 hardware=None, store: EvaluationStore | None = None, host_feed: Mapping | None = None) -> None:
        from qaev.hardware import HardwareTable, load_table

        self.quantizer = quantizer
        self.evaluator = evaluator
        self.space = space or SearchSpace(layers=quantizer.layers)
        self.objectives = tuple(objectives)
        self.constraints = dict(constraints or {})
        self.table = hardware if isinstance(hardware, HardwareTable) or hardware is None else load_table(hardware)
        check_objectives(self.objectives, self.constraints, has_hardware=self.table is not None)
        self.store = store if store is not None else EvaluationStore()
        self.host_feed = host_feed
        self.n_evaluated = 0
        weights = {layer.weight for layer in quantizer.layers if layer.weight}
        self._other_bytes = sum(numpy_helper.to_array(init).nbytes for init in quantizer.model.proto.graph.initializer
                                if init.name not in weights)
        super().__init__(n_var=self.space.n_var, n_obj=len(self.objectives), n_ieq_constr=len(self.constraints),
                         xl=np.zeros(self.space.n_var), xu=self.space.upper().astype(float), vtype=int)

    # -- evaluation -------------------------------------------------------------------
    def _evaluate(self, X, out, *args, **kwargs) -> None:
        records = [self.evaluate_config(self.space.decode(x)) for x in np.atleast_2d(X)]
        out["F"] = np.array([self.objective_vector(r) for r in records], dtype=float)
        if self.constraints:
            out["G"] = np.array([self.constraint_vector(r) for r in records], dtype=float)

    def objective_vector(self, record: Record) -> list[float]:
        """The record's values in objective order (failed candidates get :data:`FAILED`)."""
        return [FAILED if not record.ok or record.objectives.get(n) is None else float(record.objectives[n])
                for n in self.objectives]

    def constraint_vector(self, record: Record) -> list[float]:
        """pymoo ``G`` row: value - bound (<= 0 is feasible)."""
        return [(FAILED if not record.ok or record.objectives.get(CONSTRAINTS[c]) is None
                 else float(record.objectives[CONSTRAINTS[c]]) - bound) for c, bound in self.constraints.items()]

    def evaluate_config(self, config: QuantConfig) -> Record:
        """Evaluate ``config`` (memoised on its effective hash)."""
        key = config.key()
        found = self.store.get(key)
        if found is not None:
            return found
        start = time.perf_counter()
        try:
            resolved = self.quantizer.resolve(config)
            values, metric = self._measure(resolved)
            record = Record(key=key, objectives=values, metric=metric, config=resolved.to_dict(),
                            seconds=time.perf_counter() - start)
        except QaevError as exc:
            record = Record(key=key, objectives={}, metric=None, config=config.to_dict(),
                            seconds=time.perf_counter() - start, error=str(exc))
        except Exception as exc:  # a runtime failure marks the candidate, not the run
            record = Record(key=key, objectives={}, metric=None, config=config.to_dict(),
                            seconds=time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")
        self.store.put(record)
        self.n_evaluated += 1
        return record

    def _needs(self, name: str) -> bool:
        return name in self.objectives or any(CONSTRAINTS[c] == name for c in self.constraints)

    def _measure(self, config: QuantConfig) -> tuple[dict, float | None]:
        values: dict[str, float] = {}
        metric = None
        proto = None
        if self._needs("acc_drop") or self._needs("host_latency_ms"):
            proto = self.quantizer.build(config)
        if self._needs("acc_drop"):
            measured = self.evaluator.measure(proto)
            metric = measured.value
            values["acc_drop"] = self.evaluator.drop(measured.value)
        values["size_mb"] = model_bytes(self.quantizer.layers, config, self._other_bytes) / 1e6
        if self.table is not None:
            from qaev.hardware import estimate

            report = estimate(self.quantizer.layers, config, self.table)
            values["est_latency_ms"] = report.est_latency_ms
            values["est_energy_mj"] = report.est_energy_mj
        if self._needs("host_latency_ms"):
            values["host_latency_ms"] = host_latency_ms(proto, self._host_feed())
        return values, metric

    def _host_feed(self) -> Mapping:
        if self.host_feed is None:
            self.host_feed = next(iter(self.evaluator.data.batches(batch_size=8)))
        return self.host_feed

    # -- reference values ---------------------------------------------------------------
    def float_objectives(self) -> dict[str, float]:
        """Objective values of the float model (the reference of hypervolume normalisation)."""
        values, _ = self._measure(QuantConfig())
        values["acc_drop"] = 0.0
        return {name: values[name] for name in self.objectives}

    def labels(self) -> dict[str, str]:
        """Objective name -> ``measured`` / ``exact`` / ``estimated``."""
        return {name: OBJECTIVES[name].kind for name in self.objectives}
