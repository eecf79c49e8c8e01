"""The points each method hands over, measured again on the validation and test splits,
and every figure of the comparison drawn from them."""
from __future__ import annotations

import hashlib
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import replace

import numpy as np

from qaev.baselines.result import MethodResult, Point
from qaev.config import QuantConfig
from qaev.evaluation.evaluator import Evaluator
from qaev.evaluation.scoring import near_slack
from qaev.search.front import REF_POINT, hypervolume, near_front, non_dominated

from comparison.splits import Setup

FIXED = {"uniform", "ort_tools"}  # recipes: every point is reported


def vector(objectives: dict, names) -> list[float]:
    return [float(objectives[n]) for n in names]


def reported(result: MethodResult, names) -> list[Point]:
    """The points a method hands its user: all of a recipe's, else the non-dominated set (a
    point another replaced, as qaev_default's rebuilt choice replaces it, is not handed over);
    qaev's methods also hand over the points their front keeps as near it (as ``qaev search``
    does: :meth:`qaev.evaluation.scoring.Scoring.front`), each marked ``extra["near"]``."""
    ok = [p for p in result.points if p.ok and all(p.objectives.get(n) is not None for n in names)
          and "replaced_by" not in p.extra]
    if result.method in FIXED or not ok:
        return ok
    F = np.array([vector(p.objectives, names) for p in ok])
    strict = non_dominated(F)
    if not result.method.startswith("qaev") or "acc_drop" not in names:
        return [ok[i] for i in strict]
    slack = near_slack([p.extra.get("drop_se") for p in ok])
    kept = near_front(F, slack, drop=list(names).index("acc_drop"))
    return [ok[i] if i in strict else replace(ok[i], extra={**ok[i].extra, "near": True}) for i in kept]


class TestSplit:
    """Re-measures points on the test split, or on ``evaluator``'s (memoised by config key).

    :meth:`measure_all` measures many points on ``workers`` threads at once (one ORT thread
    each; ORT releases the GIL while it runs), building each model in the calling thread, so
    at most ``workers + 1`` models are alive at a time; the values are the same as one by one.
    """

    def __init__(self, setup: Setup, *, workers: int = 1, evaluator: Evaluator | None = None) -> None:
        self.setup, self.memo, self.count, self.workers = setup, {}, 0, max(1, workers)
        self.evaluator = setup.test if evaluator is None else evaluator
        self.errors: dict[str, float] = {}  # key -> paired standard error of the test drop

    @staticmethod
    def _key(point: Point) -> str:
        return point.key or f"model:{hashlib.sha256(point.model).hexdigest()}"

    def _model(self, point: Point):
        return (self.setup.quantizer.build(QuantConfig.from_dict(point.config)) if point.config is not None
                else point.model)

    def measure(self, point: Point, key: str | None = None) -> float:
        """The test metric of ``point`` (``key``: its memo key, when the caller has it)."""
        key = key or self._key(point)
        if key not in self.memo:
            self._store(key, self._measure(self._model(point)))
        return self.memo[key]

    def error(self, point: Point) -> float | None:
        """The paired standard error of ``point``'s test drop (after :meth:`measure`)."""
        return self.errors.get(self._key(point))

    def _measure(self, model):
        return self.evaluator.measure(model, keep_outputs=True)

    def _store(self, key: str, measured) -> None:
        self.memo[key] = measured.value
        self.errors[key] = self.evaluator.head_drop(measured.outputs)[1]
        self.count += 1

    def measure_all(self, points: list[Point]) -> None:
        """Measure every point not measured yet, ``workers`` at a time."""
        todo = {}
        for point in points:
            if (key := self._key(point)) not in self.memo:
                todo.setdefault(key, point)
        if self.workers == 1 or len(todo) < 2:
            for key, point in todo.items():
                self.measure(point, key)
            return
        _ = self.evaluator.reference  # the float outputs, once, before the threads start
        running: dict = {}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for key, point in todo.items():
                while len(running) >= self.workers:
                    self._collect(running, wait(running, return_when=FIRST_COMPLETED).done)
                running[pool.submit(self._measure, self._model(point))] = key
            self._collect(running, wait(running).done)

    def _collect(self, running: dict, done) -> None:
        for future in done:
            self._store(running.pop(future), future.result())


def chosen_on(rows: list[dict]) -> str:
    """The split a method's points are chosen on: ``validation`` where every point was
    measured there, else ``search``."""
    return "validation" if rows and all("validation" in r for r in rows) else "search"


def _best_under(rows: list[dict], objective: str, limit: float) -> dict | None:
    inside = [r for r in rows if r["search"].get(objective) is not None and r["search"][objective] <= limit]
    if not inside:
        return None
    on = chosen_on(rows)
    best = min(inside, key=lambda r: (r[on]["acc_drop"], r["search"][objective]))
    return {"limit": limit, "label": best["label"], objective: best["search"][objective], "chosen_on": on,
            "search_drop": best["search"]["acc_drop"], "choice_drop": best[on]["acc_drop"],
            "test_drop": best["test"]["acc_drop"], "test_metric": best["test_metric"]}


def _validation_readings(setup: Setup, fronts: list[list[Point]], workers: int) -> TestSplit | None:
    """Every reported point measured on the validation split (None without one); a point
    that brings its reading (qaev_default's, taken within its time) is not measured again."""
    if setup.validation is None:
        return None
    split = TestSplit(setup, workers=workers, evaluator=setup.validation)
    for point in (p for front in fronts for p in front if "validation" in p.extra):
        key = split._key(point)
        split.memo[key], split.errors[key] = point.extra["validation"]["metric"], point.extra["validation"]["se"]
    split.measure_all([p for front in fronts for p in front])
    return split


def summarise(setup: Setup, results: list[MethodResult], *, size_x, latency_x, test_workers: int = 1) -> dict:
    """Every figure of the comparison, test-split figures first."""
    names = list(setup.objectives)
    floats = setup.problem().float_objectives()
    scale_search = [setup.search.float_value if n == "acc_drop" else floats[n] for n in names]
    scale_test = [setup.test.float_value if n == "acc_drop" else floats[n] for n in names]
    fronts = [reported(result, names) for result in results]
    split = TestSplit(setup, workers=test_workers)
    split.measure_all([p for front in fronts for p in front])
    checked = _validation_readings(setup, fronts, test_workers)
    budgets = [("size_mb", floats.get("size_mb"), x) for x in size_x]
    if setup.hardware is not None:
        from qaev.quantize.sizes import estimate_cost

        est = estimate_cost(setup.quantizer.layers, QuantConfig(), setup.hardware).est_latency_ms
        budgets += [("est_latency_ms", est, x) for x in latency_x]
        floats = {**floats, "est_latency_ms": est}
    methods = []
    for result, front in zip(results, fronts):
        rows = []
        for p in front:
            value = split.measure(p)
            test = {**p.objectives, "acc_drop": setup.test.drop(value)}
            rows.append({"label": p.label, "key": p.key, "search": p.objectives, "search_metric": p.metric,
                         "test": test, "test_metric": value, "test_se": split.error(p), "extra": p.extra,
                         "config": p.config})  # to build the point again (None: another tool's model)
            if checked is not None:
                seen = checked.measure(p)
                rows[-1].update({"validation": {**p.objectives, "acc_drop": setup.validation.drop(seen)},
                                 "validation_metric": seen, "validation_se": checked.error(p)})
        F_test = np.array([vector(r["test"], names) for r in rows]).reshape(-1, len(names))
        F_search = np.array([vector(r["search"], names) for r in rows]).reshape(-1, len(names))
        best = {f"{obj} <= float/{x:g}": _best_under(rows, obj, ref / x) for obj, ref, x in budgets if ref}
        methods.append({"method": result.method, "evaluations": result.evaluations, "wall_s": result.wall_s,
                        "passes": result.passes if result.passes is not None else float(result.evaluations),
                        "hv_test": hypervolume(F_test, scale_test), "hv_search": hypervolume(F_search, scale_search),
                        "best_under": best, "notes": list(result.notes), "points": rows,
                        "all_points": [p.to_dict() for p in result.points]})
    hv = {m["method"]: m["hv_test"] for m in methods}
    base = max((v for k, v in hv.items() if not k.startswith("qaev")), default=0.0)
    checked_float = {} if setup.validation is None else {"validation_metric": setup.validation.float_value}
    return {"float": {"search_metric": setup.search.float_value, "test_metric": setup.test.float_value,
                      **checked_float, **floats},
            "hypervolume": {"reference_point": REF_POINT, "normalised_by": "float model value per objective "
                            "(acc_drop by the float metric)", "scale_test": scale_test, "scale_search": scale_search,
                            "qaev_over_best_baseline": hv["qaev"] / base if base and "qaev" in hv else None,
                            **{f"{m}_over_best_baseline": hv[m] / base for m in ("qaev_screened", "qaev_informed")
                               if base and m in hv}},
            "test_measurements": split.count, "methods": methods}


def recommend_among(entries: list[tuple[dict, dict | None]], objectives: list[str],
                    tolerance: float | None) -> dict | None:
    """:func:`qaev.runtime.rundir.recommend` over ``(objectives on the search split, validation
    reading or None)`` pairs: its pick, ``id`` the pair's index, or None."""
    from qaev.runtime.rundir import recommend

    return recommend([{"id": i, "objectives": values, **({} if checked is None else {"validation": checked})}
                      for i, (values, checked) in enumerate(entries)], objectives, tolerance)
