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
from typing import Iterator

import numpy as np

from qaev.config import QuantConfig
from qaev.evaluation.staging import SIMULATE_BELOW_MACS
from qaev.runtime.prefetch import prepared_ahead
from qaev.runtime.store import EvaluationStore, Record, StageKind

__all__ = ["promising", "finishing", "simulator_for"]


def promising(engine, store: EvaluationStore) -> list[Record]:
    """The screened, not yet finished records of ``store`` worth finishing, best first-stage
    drop first (empty unless ``engine`` (a :class:`~qaev.evaluation.candidates.CandidateEvaluator`)
    is screening)."""
    scoring = engine.scoring
    if not scoring.screening:
        return []
    screened = sorted((scoring.as_searched(r) for r in store.records()
                       if r.ok and r.screen is not None and _optimistic_feasible(scoring, r)),
                      key=lambda r: r.screen.drop)
    drop = scoring.objectives.index("acc_drop")
    others = [k for k in range(len(scoring.objectives)) if k != drop]
    kept: list[Record] = []
    rows: list[np.ndarray] = []
    for record in screened:
        row = np.array(scoring.objective_vector(record))
        if not any(_confidently_better(engine, j_rec, j_row, record, row, others) for j_rec, j_row in zip(kept, rows)):
            kept.append(record)
            rows.append(row)
    return [r for r in kept if r.stage is not None and r.stage.kind is StageKind.SCREEN]  # others were finished


def finishing(engine, store: EvaluationStore, *, depth: int = 0) -> Iterator[Record]:
    """Race to the full set the :func:`promising` candidates, best first-stage drop first,
    each against the fully measured front of ``store`` so far (keep each yielded record in
    ``store`` before asking for the next); at most ``staging.max_finished`` of them, evenly
    spread; each on its own QDQ model, reusing its screen's outputs unless the simulator
    produced them. ``depth``: candidates prepared ahead on other threads."""
    chosen = promising(engine, store)
    limit = engine.staging.max_finished if engine.staging is not None else None
    if limit is not None and len(chosen) > limit:  # evenly along the front, both ends kept
        picks = np.unique(np.round(np.linspace(0, len(chosen) - 1, limit)).astype(int)) if limit else []
        chosen = [chosen[i] for i in picks]
    configs = [QuantConfig.from_dict(record.config) for record in chosen]
    for record, (config, prepared) in zip(chosen, prepared_ahead(configs, engine.prepare, depth=depth)):
        head = engine.heads.pop(record.key, None)
        done = engine.compute(config, front=engine.scoring.front_matrix(store.records()), prepared=prepared,
                              head=None if record.screen.simulated else head)
        yield replace(done, key=record.key, seconds=done.seconds + record.seconds, screen=record.screen)


def simulator_for(engine):
    """The :class:`~qaev.quantize.simulate.Simulator` ``engine`` screens on, or None: only
    when screening, with a stage boundary, no objective that needs the QDQ model itself
    (host latency), and ``staging.simulate`` true or, when None, a first stage under
    :data:`~qaev.evaluation.staging.SIMULATE_BELOW_MACS` multiply-accumulates and a model the
    simulator can run.

    Raises:
        ConfigError: ``staging.simulate`` is true and the simulator cannot run the model.
    """
    staging = engine.staging
    if not engine.scoring.screening or staging.simulate is False or engine.needs("quiet"):
        return None
    ev = engine.evaluator
    stops = staging.stops(len(ev.data), ev.batch_size)
    macs = [layer.macs for layer in engine.quantizer.layers]
    if not stops or (staging.simulate is None and (None in macs or sum(macs) * stops[0] >= SIMULATE_BELOW_MACS)):
        return None
    from qaev.errors import ConfigError
    from qaev.quantize.simulate import Simulator

    simulator = Simulator(engine.quantizer, threads=ev.threads, level=ev.ort_level)
    try:
        simulator.session  # noqa: B018 - a model the simulator cannot stand in for shows here
    except Exception as exc:
        if staging.simulate:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(f"staging simulate: the screening simulator cannot run this model "
                              f"({type(exc).__name__}: {first}); "
                              "screen on the candidates' own models instead") from None
        return None  # auto: screen on the candidates' own models
    return simulator


def _optimistic_feasible(scoring, record: Record) -> bool:
    if not scoring.constraints:
        return True
    drop = record.screen.drop - record.screen.margin
    return max(scoring.constraint_vector(replace(record, objectives={**record.objectives, "acc_drop": drop}))) <= 0


def _confidently_better(engine, a: Record, a_row: np.ndarray, b: Record, b_row: np.ndarray, others) -> bool:
    """Whether screened ``a`` is at least as good as ``b`` everywhere (epsilons on the
    other objectives, confidence on the drop)."""
    staging = engine.staging
    slack = engine.scoring.slack(b_row)
    if np.any(a_row[others] > b_row[others] + slack[others]):
        return False
    z, eps = staging.z, staging.eps_drop
    if a.screen.items is not None and b.screen.items is not None:
        gap = np.asarray(b.screen.items) - np.asarray(a.screen.items)  # > 0: a better
        stderr = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else 0.0
        return bool(gap.mean() - z * stderr >= -eps)
    heads = engine.heads
    if a.key in heads and b.key in heads:  # this process screened both: bootstrap the pair
        gap, stderr = engine.evaluator.paired_gap(heads[a.key][0], heads[b.key][0], n_boot=staging.n_boot)
        return bool(gap - z * stderr >= -eps)
    return bool(a.screen.drop <= b.screen.drop - b.screen.margin + eps)
