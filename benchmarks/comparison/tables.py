"""The tables a comparison prints, recomputed from compare.json: per method, within the
tolerance, the smallest points, and the seeds summary."""
from __future__ import annotations

import numpy as np

from qaev.runtime.search_run import default_tolerance
from qaev.search.front import hypervolume_ceiling, tolerance_hypervolume

from comparison.readings import chosen_on, recommend_among

def print_table(doc: dict) -> None:
    """The per-method table (test-split figures)."""
    methods = doc["methods"]
    keys = list(methods[0]["best_under"]) if methods else []
    env = doc["env"]
    budget = (f"{env['time_minutes']:g} min per method" if env.get("time_minutes")
              else f"budget {env['budget']} full evaluations")
    print(f"\n{env['problem']}: {budget}, seed {env['seed']}; "
          f"float {doc['float']['search_metric']:.2f} (search) / {doc['float']['test_metric']:.2f} (test); "
          f"figures on the test split ({doc['env']['split']['test']} samples)")
    head = f"{'method':13s} {'evals':>5s} {'passes':>6s} {'wall_s':>7s} {'HV test':>8s} {'HV search':>9s}"
    print(head + "".join(f"  {k:>26s}" for k in keys))
    for m in methods:
        cells = ""
        for k in keys:
            b = m["best_under"][k]
            cells += "  " + ("-" if b is None else f"{b['test_metric']:.2f} (drop {b['test_drop']:+.2f})").rjust(26)
        passes = m.get("passes", m["evaluations"])  # compare.json files written before passes were recorded
        print(f"{m['method']:13s} {m['evaluations']:5d} {passes:6.1f} {m['wall_s']:7.2f} {m['hv_test']:8.4f} "
              f"{m['hv_search']:9.4f}" + cells)
    ratio = doc["hypervolume"]["qaev_over_best_baseline"]
    if ratio is not None:
        print(f"qaev HV (test) / best baseline HV (test): {ratio:.3f}")
    for method, how in (("qaev_screened", "budget in passes of the search split"),
                        ("qaev_informed", "noise probes charged in passes of the search split")):
        value = doc["hypervolume"].get(f"{method}_over_best_baseline")
        if value is not None:
            print(f"{method} HV (test) / best baseline HV (test): {value:.3f} ({how})")


def tolerance_figures(doc: dict, tolerance: float) -> dict:
    """Two readings of the test-split fronts beside the hypervolume, recomputed from the
    reported points (so any compare.json can be read again): the hypervolume of the ideal
    point of every method's points together (what no ratio in this run could exceed), and
    :func:`qaev.search.front.tolerance_hypervolume` per method (drop 0..``tolerance`` points;
    for a method that reported near points, also ``"<method> (front alone)"`` without them)."""
    names = list(doc["env"]["objectives"])
    scale = doc["hypervolume"]["scale_test"]
    fronts = {m["method"]: np.array([[r["test"][n] for n in names] for r in m["points"]]).reshape(-1, len(names))
              for m in doc["methods"]}
    alone = {f"{m['method']} (front alone)": np.array([[r["test"][n] for n in names] for r in m["points"]
                                                       if not r["extra"].get("near")]).reshape(-1, len(names))
             for m in doc["methods"] if any(r["extra"].get("near") for r in m["points"])}
    within = {k: tolerance_hypervolume(F, scale, drop=names.index("acc_drop"), tolerance=tolerance)
              for k, F in {**fronts, **alone}.items()}
    baselines = [m for m in doc["methods"] if not m["method"].startswith("qaev")]
    best_hv = max((m["hv_test"] for m in baselines), default=0.0)
    best_within = max((within[m["method"]] for m in baselines), default=0.0)
    ceiling = hypervolume_ceiling(np.vstack(list(fronts.values())), scale) if fronts else 0.0
    return {"tolerance": tolerance, "ceiling": ceiling,
            "ceiling_over_best_baseline": ceiling / best_hv if best_hv else None,
            "within_tolerance": within,
            "within_over_best_baseline": {k: v / best_within for k, v in within.items()
                                          if k.startswith("qaev") and best_within}}


def print_tolerance(figures: dict) -> None:
    """The :func:`tolerance_figures` lines."""
    ratio = figures["ceiling_over_best_baseline"]
    print(f"\nHV ceiling: the ideal point of all methods' test points together has HV {figures['ceiling']:.4f}"
          + ("" if ratio is None else f", {ratio:.3f}x the best baseline's: no method's ratio could exceed that"))
    print(f"within-tolerance HV (test; drop 0..{figures['tolerance']:g} points, clipped at 0, x each cost 0..float; "
          "1 = every tolerance met at zero size):")
    print("  " + "  ".join(f"{k} {v:.4f}" for k, v in figures["within_tolerance"].items()))
    for k, v in figures["within_over_best_baseline"].items():
        print(f"  {k} / best baseline: {v:.3f}")


def smallest_within(doc: dict, limit: float, cost: str = "size_mb") -> list[dict]:
    """Per method, its lowest-``cost`` reported point within ``limit`` metric points of
    float on the split the points are chosen on (:func:`chosen_on`: the validation split
    where the run has one, else the search split) and on the search split, as
    :func:`qaev.runtime.rundir.recommend` chooses, with that point's test-split drop."""
    ref = doc["float"].get(cost)
    rows = []
    for m in doc["methods"]:
        on = chosen_on(m["points"])
        costed = [r for r in m["points"] if r["search"].get(cost) is not None]
        pick = recommend_among([(r["search"], r.get("validation")) for r in costed], ["acc_drop", cost], limit)
        best = None if pick is None else costed[pick["id"]]
        rows.append({"method": m["method"], "limit": limit, "cost": cost, "chosen_on": on, "point": None
                     if best is None else {
                         cost: best["search"][cost], "x_smaller": ref / best["search"][cost] if ref else None,
                         "search_drop": best["search"]["acc_drop"], "choice_drop": best[on]["acc_drop"],
                         "test_drop": best["test"]["acc_drop"], "test_se": best.get("test_se")}})
    return rows


def print_within(doc: dict, limits) -> None:
    """The :func:`smallest_within` table for each limit."""
    for limit in limits:
        rows = smallest_within(doc, limit)
        on = rows[0]["chosen_on"] if rows else "search"
        print(f"\nsmallest size_mb within {limit:g} points of float on the {on} split (float "
              f"{doc['float']['size_mb']:.2f} MB):")
        for row in rows:
            p = row["point"]
            print(f"  {row['method']:13s} " + ("-" if p is None else
                  f"{p['x_smaller']:5.2f}x  {p['size_mb']:8.3f} MB  search drop {p['search_drop']:+.2f}  "
                  + ("" if row["chosen_on"] == "search" else f"{row['chosen_on']} drop {p['choice_drop']:+.2f}  ")
                  + f"test drop {p['test_drop']:+.2f}"
                  + ("" if p.get("test_se") is None else f" +-{p['test_se']:.2f}")))


def seed_row(doc: dict, tolerance: float) -> dict:
    """One run's reading for the seeds summary: qaev's and each baseline's smallest point
    within ``tolerance`` (:func:`smallest_within`: chosen on validation and search), whether
    it holds on the test split (test drop <= ``tolerance``), the largest baseline point that
    holds, their size ratio (None when qaev's choice does not hold or no baseline's does)
    and the within-tolerance hypervolume ratio."""
    rows = {row["method"]: row["point"] for row in smallest_within(doc, tolerance)}
    ours = next((m for m in rows if m == "qaev_default"), next((m for m in rows if m.startswith("qaev")), None))

    def holds(point) -> bool:
        return point is not None and point["test_drop"] <= tolerance

    held = {m: p for m, p in rows.items() if not m.startswith("qaev") and holds(p)}
    best = max(held, key=lambda m: held[m]["x_smaller"], default=None)
    qaev = rows.get(ours)
    ratio = (qaev["x_smaller"] / held[best]["x_smaller"] if holds(qaev) and best is not None else None)
    hv = tolerance_figures(doc, tolerance)["within_over_best_baseline"].get(ours)
    return {"problem": doc["env"]["problem"], "seed": doc["env"]["seed"], "tolerance": tolerance, "qaev": qaev,
            "qaev_holds": holds(qaev), "baseline": best, "baseline_point": None if best is None else held[best],
            "ratio": ratio, "hv_ratio": hv}


def print_seeds(docs: list[dict], tolerance: float | None = None) -> list[dict]:
    """The seeds summary: one line per run (qaev's choice and the best baseline's that holds
    on test, each with its test drop and paired SE), then per problem and over all runs the
    mean and lowest size ratio and the mean within-tolerance hypervolume ratio. A run where
    qaev's choice does not hold on test has no ratio and counts as below 1.0."""
    rows = [seed_row(doc, default_tolerance(doc["env"]["metric"]) if tolerance is None else tolerance)
            for doc in docs]

    def point(p) -> str:
        se = "" if p.get("test_se") is None else f" +-{p['test_se']:.2f}"
        return f"{p['x_smaller']:5.2f}x test {p['test_drop']:+.2f}{se}"

    print(f"{'problem':28s} {'seed':>4s} {'tol':>4s}  {'qaev choice':26s} {'best baseline holding on test':38s} "
          f"{'size ratio':>10s} {'HV ratio':>8s}")
    for r in rows:
        q = "-" if r["qaev"] is None else point(r["qaev"]) + ("" if r["qaev_holds"] else " (beyond)")
        b = "-" if r["baseline"] is None else f"{r['baseline']:8s} {point(r['baseline_point'])}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
        hv = "-" if r["hv_ratio"] is None else f"{r['hv_ratio']:.3f}"
        print(f"{r['problem']:28s} {r['seed']:4d} {r['tolerance']:4g}  {q:26s} {b:38s} {ratio:>10s} {hv:>8s}")
    groups = {p: [r for r in rows if r["problem"] == p] for p in dict.fromkeys(r["problem"] for r in rows)}
    for name, group in [*groups.items(), ("all runs", rows)]:
        ratios = [r["ratio"] for r in group if r["ratio"] is not None]
        hvs = [r["hv_ratio"] for r in group if r["hv_ratio"] is not None]
        missing = len(group) - len(ratios)
        print(f"{name}: {len(group)} run(s); size ratio mean "
              + ("-" if not ratios else f"{np.mean(ratios):.3f}, lowest {min(ratios):.3f}")
              + (f" ({missing} run(s) without a ratio: qaev's choice beyond tolerance on test, or no baseline's "
                 "within)" if missing else "")
              + ("" if not hvs else f"; within-tolerance HV ratio mean {np.mean(hvs):.3f}"))
    print_code_versions(docs)
    return rows


def print_code_versions(docs: list[dict]) -> None:
    """A line naming the code each run came from, when the runs do not all share one
    (``env.code``; runs written before it was recorded count as unrecorded)."""
    def version(doc: dict) -> str:
        code = doc["env"].get("code") or {}
        if not code.get("commit"):
            return "unrecorded"
        return code["commit"] + (" with changes" if code.get("changed") else "")

    seen = [version(doc) for doc in docs]
    if len(set(seen)) > 1:
        print("the runs come from different code: " + "; ".join(
            f"{doc['env']['problem']} seed {doc['env']['seed']}: {v}" for doc, v in zip(docs, seen)))
