"""Which screened candidates a screening search (``Finish.END``) finishes, finishing them,
and whether the screens run on the simulator (:func:`simulator_for`).

After the search, every candidate has a first-stage measurement on the same items. In
order of first-stage drop, a candidate is set aside when one already kept is at least as
good on every other objective (within the staging epsilon) and better on the drop with
confidence: by the paired per-item differences on the same items (mean minus ``z``
standard errors >= -eps_drop) where the metric has per-item scores, else by a paired
bootstrap of the two first-stage outputs when this process screened both, else by the
candidate's own margin against the float model. Finishing runs each kept candidate's own
QDQ model over the full set, raced against the fully measured front.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from qaev.config import QuantConfig
from qaev.runtime.prefetch import prepared_ahead
from qaev.evaluation.staging import SCREEN, SIMULATE_BELOW_MACS, SIMULATED
from qaev.runtime.store import Record

__all__ = ["promising", "finish", "simulator_for", "MAX_HEADS"]

#: First-stage outputs a problem keeps in memory (for finishing and paired comparisons);
#: beyond it the oldest are dropped, and such a candidate's finish runs its first stage again.
MAX_HEADS = 500


def promising(problem) -> list[Record]:
    """The screened, not yet finished records of ``problem`` worth finishing, best
    first-stage drop first (empty unless the problem is screening)."""
    if not problem.screening:
        return []
    screened = sorted((problem.as_searched(r) for r in problem.store.records()
                       if r.ok and "screen_drop" in r.extra and _optimistic_feasible(problem, r)),
                      key=lambda r: r.extra["screen_drop"])
    drop = problem.objectives.index("acc_drop")
    others = [k for k in range(problem.n_obj) if k != drop]
    kept: list[Record] = []
    rows: list[np.ndarray] = []
    for record in screened:
        row = np.array(problem.objective_vector(record))
        if not any(_confidently_better(problem, j_rec, j_row, record, row, others) for j_rec, j_row in zip(kept, rows)):
            kept.append(record)
            rows.append(row)
    return [r for r in kept if r.extra.get("stage") == SCREEN]  # the others were finished already


def finish(problem) -> int:
    """Race to the full set the :func:`promising` candidates of ``problem``, best
    first-stage drop first, each against the fully measured front so far (at most
    ``staging.max_finished`` of them, evenly spread); each on its own QDQ model, reusing
    its screen's outputs unless the simulator produced them. Returns how many were raced."""
    chosen = promising(problem)
    limit = problem.staging.max_finished if problem.staging is not None else None
    if limit is not None and len(chosen) > limit:  # evenly along the front, both ends kept
        picks = np.unique(np.round(np.linspace(0, len(chosen) - 1, limit)).astype(int)) if limit else []
        chosen = [chosen[i] for i in picks]
    configs = [QuantConfig.from_dict(record.config) for record in chosen]
    for record, (config, prepared) in zip(chosen, prepared_ahead(configs, problem._prepare,
                                                                 depth=problem.effective_prefetch)):
        head = problem.heads.pop(record.key, None)
        done = problem.compute(config, front=problem.full_front_matrix(), prepared=prepared,
                               head=None if record.extra.get("screen_by") == SIMULATED else head)
        screen = {k: v for k, v in record.extra.items() if k.startswith("screen_")}
        problem._keep(replace(done, key=record.key, seconds=done.seconds + record.seconds,
                              extra={**done.extra, **screen}))
    return len(chosen)


def simulator_for(problem):
    """The :class:`~qaev.quantize.simulate.Simulator` ``problem`` screens on, or None:
    only when screening, with a stage boundary, no objective that needs the QDQ model
    itself (host latency), and ``staging.simulate`` true or, when None, a first stage
    under :data:`~qaev.evaluation.staging.SIMULATE_BELOW_MACS` multiply-accumulates and a model the
    simulator can run.

    Raises:
        ConfigError: ``staging.simulate`` is true and the simulator cannot run the model.
    """
    staging = problem.staging
    if not problem.screening or staging.simulate is False or problem._needs("host_latency_ms"):
        return None
    ev = problem.evaluator
    stops = staging.stops(len(ev.data), ev.batch_size)
    macs = [layer.macs for layer in problem.quantizer.layers]
    if not stops or (staging.simulate is None and (None in macs or sum(macs) * stops[0] >= SIMULATE_BELOW_MACS)):
        return None
    from qaev.errors import ConfigError
    from qaev.quantize.simulate import Simulator

    simulator = Simulator(problem.quantizer, threads=ev.threads)
    try:
        simulator.session  # noqa: B018 - a model the simulator cannot stand in for shows here
    except Exception as exc:
        if staging.simulate:
            raise ConfigError(f"staging simulate: the screening simulator cannot run this model "
                              f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); "
                              "screen on the candidates' own models instead") from None
        return None  # auto: screen on the candidates' own models
    return simulator


def _optimistic_feasible(problem, record: Record) -> bool:
    if not problem.constraints:
        return True
    drop = record.extra["screen_drop"] - record.extra.get("screen_margin", 0.0)
    return max(problem.constraint_vector(replace(record, objectives={**record.objectives, "acc_drop": drop}))) <= 0


def _confidently_better(problem, a: Record, a_row: np.ndarray, b: Record, b_row: np.ndarray, others) -> bool:
    """Whether screened ``a`` is at least as good as ``b`` everywhere (epsilons on the
    other objectives, confidence on the drop)."""
    staging = problem.staging
    slack = problem.staging_slack(b_row)
    if np.any(a_row[others] > b_row[others] + slack[others]):
        return False
    z, eps = staging.z, staging.eps_drop
    if "screen_items" in a.extra and "screen_items" in b.extra:
        gap = np.asarray(b.extra["screen_items"]) - np.asarray(a.extra["screen_items"])  # > 0: a better
        stderr = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else 0.0
        return bool(gap.mean() - z * stderr >= -eps)
    heads = problem.heads
    if a.key in heads and b.key in heads:  # this process screened both: bootstrap the pair
        gap, stderr = problem.evaluator.paired_gap(heads[a.key][0], heads[b.key][0], n_boot=staging.n_boot)
        return bool(gap - z * stderr >= -eps)
    return bool(a.extra["screen_drop"] <= b.extra["screen_drop"] - b.extra.get("screen_margin", 0.0) + eps)
