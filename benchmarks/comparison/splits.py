"""The shared pieces of a comparison: the calibrated quantizer, the space, and the search,
validation and test splits' evaluators."""
from __future__ import annotations

import time
from dataclasses import dataclass

from qaev.evaluation.evaluator import Evaluator
from qaev.evaluation.staging import Staging
from qaev.problems import problem_parts
from qaev.quantize import Quantizer
from qaev.runtime.store import EvaluationStore
from qaev.search.defaults import default_space
from qaev.search.problem import QuantizationProblem
from qaev.search.space import SearchSpace
from qaev.search.width_rows import weight_only_act

#: Batch of the search split's evaluator: a screen's first stage is whole batches.
SEARCH_BATCH = 32


@dataclass(frozen=True)
class Setup:
    """The shared pieces: calibrated quantizer, space, the splits' evaluators (``validation``:
    the split every method's reported points are chosen on, None to choose on ``search``)."""

    name: str
    parts: object
    quantizer: Quantizer
    space: SearchSpace
    search: Evaluator
    test: Evaluator
    objectives: tuple
    hardware: object
    validation: Evaluator | None = None

    def problem(self, *, staging: Staging | None = None, constraints: dict | None = None) -> QuantizationProblem:
        """A fresh problem on the search split (its own store, shared caches)."""
        return QuantizationProblem(self.quantizer, self.search, space=self.space, objectives=self.objectives,
                                   hardware=self.hardware, store=EvaluationStore(), staging=staging,
                                   constraints=constraints)


def build_setup(name: str, *, objectives, hardware, seed: int, calib=None, eval=None, space=None,
                validation: float = 0.0) -> Setup:
    """Build the problem's parts and split its evaluation data into search and test halves
    (seeded), unless the problem brings its own test split (``parts.test``). ``space``:
    :class:`SearchSpace` options shared by every method (default: the default space).
    ``validation``: the share of the search split set apart (seeded) as the validation
    split every method's points are chosen on, as ``qaev search --validation`` does (0: none)."""
    from qaev.hardware import load_table

    parts = problem_parts(name, calib=calib, eval=eval)
    test = getattr(parts, "test", None)
    if test is None:
        search_data, test_data = parts.eval.split(n_first=len(parts.eval) // 2, n_second=None, seed=seed)
    else:
        search_data, test_data = parts.eval, test
    validation_data = None
    if validation > 0:
        n_val = int(round(validation * len(search_data)))
        search_data, validation_data = search_data.split(n_first=len(search_data) - n_val, n_second=n_val, seed=seed)
    quantizer = Quantizer.calibrated(parts.model, parts.calib)
    space = dict(space or {})
    if "preset" in space:  # the preset's defaults for the model's family fill what is not given
        preset = space.pop("preset")
        space = default_space(quantizer.layers, preset=preset, given=space).options()
    return Setup(name=name, parts=parts, quantizer=quantizer,
                 space=SearchSpace(layers=quantizer.layers, **space),
                 search=Evaluator(parts.model, search_data, metric=parts.metric, batch_size=SEARCH_BATCH),
                 test=Evaluator(parts.model, test_data, metric=parts.metric), objectives=tuple(objectives),
                 hardware=load_table(hardware) if hardware else None,
                 validation=None if validation_data is None else Evaluator(parts.model, validation_data,
                                                                          metric=parts.metric))


def per_evaluation_s(setup: Setup) -> float:
    """Seconds one full evaluation on the search split takes, measured on a real candidate:
    the space's uniform 4-bit weight-only config, built once untimed (the rounding caches
    filled, as every method but the first finds them), then built, opened and run on the
    search split, timed. (Until 2026-12-07 this was the float model's run x1.3, which
    overstated it by about a third: the baselines planned fewer evaluations than their
    time allowed and stopped after three quarters of it.)"""
    space = setup.space
    config = space.decode(space.encode_uniform(w_bits=4, act=weight_only_act(space)))
    setup.quantizer.build(config)
    started = time.perf_counter()
    setup.search.measure(setup.quantizer.build(config))
    return time.perf_counter() - started
