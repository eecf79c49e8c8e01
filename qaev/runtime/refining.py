"""Rebuilding a front point with block reconstruction (``qaev refine``, and the closing step
of a search run with ``--refine``), measured again beside the point as searched.

The rebuilt config has ``rounding: block`` on every layer block reconstruction applies to
(quantized Conv/Gemm/MatMul weights on a grid of at most 8 bits; bias correction there is
replaced by the learned shift, and weights are fitted to float inputs, as block
reconstruction fits to quantized ones itself); its size is the point's. Both configs are
measured on the same items of each split, so their drops pair.

A search run ships the rebuilt point in place of the recommended one (``recommended.refined``
in front.json) unless, on the split the recommendation is made on, it loses more than the
point as searched by over twice the paired standard error of the difference: a check
against a learning that failed, not a second choice (in most measured comparisons block
reconstruction beat GPTQ with bias correction at the same bits on test, and the validation
splits are too small to tell the two apart; docs/defaults.md).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from qaev.config import ActMode, BlockSettings, QuantConfig, RoundingInputs
from qaev.config_io import save_config
from qaev.errors import ConfigError
from qaev.files import write_atomic

__all__ = ["RefineTime", "Refined", "refined_config", "refine_point", "record_refined", "shipped_text", "REFINE_SHARE",
           "REFINE_ITERS", "LEARNED_DIR"]

#: A run directory's folder of learned block reconstructions (the refined points' models:
#: exported from the run on another machine, they are read here, not learned again).
LEARNED_DIR = "learned"
#: Largest share of a search run's time budget kept for rebuilding its recommended point.
REFINE_SHARE = 0.25
#: Learning steps per block of a rebuild when time allows (:class:`~qaev.config.BlockSettings`' default).
REFINE_ITERS = BlockSettings().iters
#: Calibration samples per learning step (``ReconstructOptions.batch_size``, whose module
#: imports PyTorch).
STEP_BATCH = 8
#: Fewest learning steps per block worth a rebuild within a time budget (below, none is made).
MIN_ITERS = 100
#: Seconds of one learning step per calibration sample, over the float model's ONNX Runtime
#: seconds per sample (one thread), weight-only points and points with static activations:
#: measured at about 4-4.5 and 12 on MiniLM and EfficientNet-Lite0 (one core; the calibration
#: passes of every block included), rounded up.
_STEP_COST = {False: 5.0, True: 12.0}
#: Seconds a rebuild takes whatever its size (importing PyTorch, cutting the graph into blocks).
_SETUP_S = 10.0
#: Seconds kept after the learning, before the measuring, to build the two QDQ models.
_BUILD_S = 5.0


def refined_config(config: QuantConfig, layers, *, block: BlockSettings | None = None) -> QuantConfig:
    """``config`` with ``rounding: block`` on every layer block reconstruction applies to
    (learning with ``block``, default :class:`~qaev.config.BlockSettings`)."""
    from qaev.quantize.rounding.groups import supports_data_aware
    from qaev.quantize.rounding.registry import rounding_entry

    by_name = {layer.name: layer for layer in layers}
    changed = {}
    for name, cfg in config.layers.items():
        eff = cfg.effective()
        if (not cfg.is_float and eff.w_bits is not None and eff.w_bits <= 8 and name in by_name
                and supports_data_aware(by_name[name]) and rounding_entry(eff.rounding).on_grid):
            changed[name] = replace(cfg, rounding="block", bias_correction=False)
    return replace(config, layers={**config.layers, **changed}, rounding_inputs=RoundingInputs.FLOAT,
                   block=block or BlockSettings())


def _static(config: QuantConfig) -> bool:
    return any(not cfg.is_float and cfg.effective().act is ActMode.STATIC for cfg in config.layers.values())


@dataclass(frozen=True)
class RefineTime:
    """What a rebuild costs, from the float model's measured evaluation.

    Attributes:
        per_sample_s: the float model's ONNX Runtime seconds per sample (one thread).
        batch: calibration samples per learning step.
        measure_s: seconds to measure both configs on the splits afterwards.
    """

    per_sample_s: float
    batch: int
    measure_s: float

    def seconds(self, iters: int, *, static: bool) -> float:
        """Estimated seconds of a rebuild with ``iters`` steps per block, measuring included."""
        return iters * self.batch * self.per_sample_s * _STEP_COST[static] + self.measure_s + _SETUP_S

    def iters_within(self, seconds: float, config: QuantConfig, *, most: int) -> int:
        """The most steps per block (at most ``most``) whose rebuild of ``config`` fits in
        ``seconds`` (0 when fewer than :data:`MIN_ITERS` fit)."""
        per_step = self.batch * self.per_sample_s * _STEP_COST[_static(config)]
        iters = min(most, int(max(0.0, seconds - self.measure_s - _SETUP_S) / max(per_step, 1e-9)))
        return iters if iters >= MIN_ITERS else 0

    def learning_deadline(self, end: float) -> float:
        """When the learning of a rebuild that must be done by ``end`` (a ``time.monotonic()``)
        should end, the models' building and measuring kept after it: the estimate above
        plans the steps, this deadline gives later blocks fewer where the learning runs
        behind it (:mod:`qaev.quantize.learned.pacing`)."""
        return end - self.measure_s - _BUILD_S


@dataclass(frozen=True)
class Refined:
    """A rebuilt point: its config, and per split (``search``, ``validation``) the metric and
    drop of the rebuilt config (``after``) and of the config as searched (``before``), the
    paired standard error of the rebuilt drop against float (``se``) and the paired gap
    rebuilt minus searched with its standard error (``gap``); ``learned``: the file holding
    the learned reconstruction it was built with (None when none was kept on disk)."""

    config: QuantConfig
    after: dict
    before: dict
    seconds: float
    learned: Path | None = None

    def entry(self, rid: str, point: dict) -> dict:
        """The point's ``refined`` entry in front.json."""
        steps = {"steps": list(self.config.block.steps)} if self.config.block.steps else {}
        return {"id": rid, "from": point["id"], "config": f"configs/{rid}.yaml", "objectives": point["objectives"],
                "measured": self.after, "original": self.before, "seconds": round(self.seconds, 1),
                "iters": self.config.block.iters} | steps

    def steps_text(self) -> str:
        """E.g. ``400 steps a block`` or ``400 steps a block, fewer for 3 of 22 (the learning
        ran behind its time estimate)``."""
        block = self.config.block
        short = sum(1 for n in block.steps if n < block.iters)
        return f"{block.iters} steps a block" + (f", fewer for {short} of {len(block.steps)} (the learning ran behind "
                                                 "its time estimate)" if short else "")

    @property
    def judged_on(self) -> str:
        """The split the rebuild is judged on: validation where it was measured, else search."""
        return "validation" if "validation" in self.after else "search"

    def failed(self) -> bool:
        """Whether the rebuilt config loses more than the searched one by over twice the
        paired standard error of the difference, on :attr:`judged_on`."""
        gap, se = self.after[self.judged_on]["gap"]
        return gap > 2.0 * se


def refine_point(quantizer, config: QuantConfig, evaluators: dict, *, block: BlockSettings,
                 deadline: float | None = None) -> Refined:
    """Rebuild ``config`` with block reconstruction and measure both on ``evaluators``
    (split name -> :class:`~qaev.evaluation.evaluator.Evaluator`); with ``deadline`` (a
    ``time.monotonic()``), the learning gives later blocks fewer steps where it would end
    past it (:meth:`~qaev.quantize.Quantizer.learn_within`; the rebuilt config records them).

    Raises:
        ConfigError: no layer of ``config`` is one block reconstruction rebuilds, or
            PyTorch is not installed.
        ModelError: an operator of a block that the PyTorch interpreter does not know.
    """
    original = quantizer.resolve(config)
    rebuilt = refined_config(original, quantizer.layers, block=block)
    if not any(cfg.rounding.value == "block" for cfg in rebuilt.layers.values() if not cfg.is_float):
        raise ConfigError("no layer of this point is one block reconstruction rebuilds (a quantized Conv, Gemm or "
                          "MatMul weight of at most 8 bits on a grid)")
    started = time.perf_counter()
    if deadline is not None:
        rebuilt = quantizer.learn_within(rebuilt, deadline)
    model = quantizer.build(rebuilt)
    seconds = time.perf_counter() - started
    searched = quantizer.build(original, resolved=True)
    after, before = {}, {}
    for split, evaluator in evaluators.items():
        new = evaluator.measure(model, keep_outputs=True)
        old = evaluator.measure(searched, keep_outputs=True)
        gap = evaluator.paired_gap(old.outputs, new.outputs)
        after[split] = {"metric": new.value, "acc_drop": evaluator.drop(new.value),
                        "se": evaluator.head_drop(new.outputs)[1], "gap": list(gap)}
        before[split] = {"metric": old.value, "acc_drop": evaluator.drop(old.value)}
    return Refined(config=rebuilt, after=after, before=before, seconds=seconds, learned=quantizer.learned_file(rebuilt))


def record_refined(run_dir: Path, doc: dict, point: dict, refined: Refined) -> str:
    """Write ``refined`` (rebuilt from front point ``point``) into the run directory: its
    config as ``configs/<id>r.yaml``, its entry under ``refined`` in front.json, and, when
    ``point`` is the recommended one, ``recommended.refined`` naming it unless
    :meth:`Refined.failed` (then removed); the learned reconstruction goes to ``learned/``,
    so an export on another machine reads the model that was measured. Returns the new id."""
    rid = f"{point['id']}r"
    save_config(refined.config, Path(run_dir) / "configs" / f"{rid}.yaml")
    if refined.learned is not None and refined.learned.is_file():  # the learned model travels with the run
        write_atomic(Path(run_dir) / LEARNED_DIR / refined.learned.name, refined.learned.read_bytes())
    doc["refined"] = [r for r in doc.get("refined", []) if r["id"] != rid] + [refined.entry(rid, point)]
    recommended = doc.get("recommended")
    if recommended and recommended["id"] == point["id"]:
        recommended.pop("refined", None)
        if not refined.failed():
            recommended["refined"] = rid
    write_atomic(Path(run_dir) / "front.json", json.dumps(doc, indent=2) + "\n")
    return rid


def shipped_text(doc: dict, refined: Refined, rid: str) -> str:
    """One line on which version of the recommended point ships, and why."""
    split = refined.judged_on
    gap, se = refined.after[split]["gap"]
    pid = doc["recommended"]["id"]
    versus = (f"on the {split} split it loses {refined.after[split]['acc_drop']:.2f} ± {refined.after[split]['se']:.2f}"
              f" against {refined.before[split]['acc_drop']:.2f} as searched (difference {gap:+.2f} ± {se:.2f})")
    if doc["recommended"].get("refined") == rid:
        return (f"recommended: {pid} rebuilt with block reconstruction ({rid}; {versus}); `--point recommended` "
                "exports it")
    return (f"recommended: {pid} as searched; its rebuild {rid} measured worse by more than twice the standard error "
            f"({versus})")
