"""The option values a config is made of: bit widths, granularities, activation modes,
calibration and rounding methods (these two generated from their registries), scale and
range rules. :mod:`qaev.config` re-exports every name."""
from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from types import MappingProxyType
from typing import Mapping, Sequence

from qaev.errors import ConfigError
from qaev.quantize.calibration.registry import CALIBRATIONS
from qaev.quantize.rounding.registry import ROUNDINGS

__all__ = ["WEIGHT_BITS", "ACT_BITS", "ACT_SETTINGS", "act_name", "Granularity", "ActMode", "CalibMethod", "ScaleRule",
           "Rounding", "RoundingInputs", "WeightRange", "OutputLoss", "BlockSettings"]

#: Weight bit widths; ``None`` means the weight stays float.
WEIGHT_BITS: tuple[int | None, ...] = (2, 3, 4, 6, 8, 16, None)
#: Static activation bit widths.
ACT_BITS: tuple[int, ...] = (4, 8, 16)


class Granularity(str, Enum):
    """How many scales a weight tensor gets."""

    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"
    BLOCK32 = "block32"
    BLOCK64 = "block64"
    BLOCK128 = "block128"

    @property
    def block_size(self) -> int | None:
        """Block length along the reduction axis, or None when not block-wise."""
        return int(self.value[5:]) if self.value.startswith("block") else None


class ActMode(str, Enum):
    """How a layer's input activations are quantized."""

    STATIC = "static"    # calibrated scale, ``a_bits`` wide
    DYNAMIC = "dynamic"  # int8 with the scale computed at run time
    FLOAT = "float"      # weight-only quantization


#: Activation settings by short name, in precision order: (mode, bits); ``float`` is
#: weight-only (its bits unused).
ACT_SETTINGS: Mapping[str, tuple[ActMode, int]] = MappingProxyType({
    "a4": (ActMode.STATIC, 4), "a8": (ActMode.STATIC, 8), "dyn8": (ActMode.DYNAMIC, 8),
    "a16": (ActMode.STATIC, 16), "float": (ActMode.FLOAT, 8),
})


def act_name(mode: ActMode, bits: int) -> str:
    """Short name of an activation setting: ``a8``, ``dyn8``, ``float``, ... (see :data:`ACT_SETTINGS`)."""
    return "float" if mode is ActMode.FLOAT else ("dyn8" if mode is ActMode.DYNAMIC else f"a{bits}")


#: How a static activation range is derived from calibration statistics: one member per
#: method of the calibration registry (:data:`qaev.quantize.calibration.registry.CALIBRATIONS`):
#: ``minmax``, ``percentile``, ``entropy``, ``mse``. ``Distribution`` (ORT's FP8 calibrator)
#: is deliberately absent: with integer types it yields meaningless ranges.
CalibMethod = Enum("CalibMethod", {name.upper(): name for name in CALIBRATIONS}, type=str, module="qaev.config")


class ScaleRule(str, Enum):
    """Whether scales are arbitrary floats or rounded up to powers of two."""

    FLOAT = "float"
    POW2 = "pow2"


#: How weights are rounded: one member per method of the rounding registry
#: (:data:`qaev.quantize.rounding.registry.ROUNDINGS`): ``nearest``, ``gptq`` (second-order,
#: data-aware rounding on the same grid; Frantar et al., "GPTQ", ICLR 2023), ``codebook``
#: (a 2-bit embedding table as 256 learned four-weight vectors), ...
Rounding = Enum("Rounding", {name.upper(): name for name in ROUNDINGS}, type=str, module="qaev.config")


class RoundingInputs(str, Enum):
    """Which layer inputs data-aware rounding and bias correction fit to.

    ``float``: each layer's inputs in the float model, so a layer's rounding is independent
    of every other layer's settings (what a search needs: each layer's weights are computed
    once and shared). ``quantized``: in graph order, each layer sees the inputs the layers
    before it, already quantized, produce, and is fitted to the float model's outputs: its
    float weight is first refitted (least squares) to map those inputs to the float outputs,
    then rounded, and bias correction matches the float output mean. Upstream error is thus
    compensated rather than compounded, at the price of one pass over the calibration data
    per layer when the model is built (see :mod:`qaev.quantize.sequential`).
    """

    FLOAT = "float"
    QUANTIZED = "quantized"


class WeightRange(str, Enum):
    """Which range a weight grid covers, per scale group.

    ``mse`` shrinks the min/max range by the factor (0.3 to 1.0) that minimises the
    group's squared rounding error, as the MSE option of GPTQ's reference quantizer does
    (Frantar et al., ICLR 2023): at 2 and 3 bits this clips a few outliers to give the
    many small weights finer steps.
    """

    MINMAX = "minmax"
    MSE = "mse"


def _count(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: expected a non-negative integer, got {value!r}")
    return value


class OutputLoss(str, Enum):
    """What block reconstruction fits the block that ends at the model's output on.

    ``mse``: the output's mean squared error, as every other block. ``kl``: the
    Kullback-Leibler divergence of the output's softmax from the float model's, for class
    scores, where what counts is which class wins (the squared error weighs the scores of
    the many losing classes as much as the winner's).
    """

    MSE = "mse"
    KL = "kl"


@dataclass(frozen=True, kw_only=True)
class BlockSettings:
    """How ``block`` rounding learns (:mod:`qaev.quantize.learned.reconstruct`; BRECQ, Li et
    al., ICLR 2021): part of the config, so a config rebuilds the same weights.

    Args:
        iters: Adam steps per block (time grows with it; see docs/results-learned-rounding.md).
        seed: seeds every random choice of the learning (batches, dropped elements).
        output_loss: what the last block is fitted on (:class:`OutputLoss`); the commands
            choose it from the metric (``kl`` where the metric ranks classes).
        learn_scale: learn a gain of each weight scale with the rounding
            (:attr:`~qaev.quantize.learned.reconstruct.ReconstructOptions.learn_scale`).
        mirror: learn each block from the calibration images and their mirror images (twice
            the samples; image inputs ``[N, C, H, W]`` only); the activation ranges the
            learning starts from and GPTQ's starting rounding stay the calibration images'.
        steps: the learning steps of each block, in graph order, where they are not all
            ``iters`` (empty: every block learns ``iters`` steps). A rebuild within a time
            budget records here the fewer steps it gave later blocks when the learning ran
            behind its estimate, so the config rebuilds the weights it measured.
    """

    iters: int = 500
    seed: int = 0
    output_loss: OutputLoss = OutputLoss.MSE
    learn_scale: bool = False
    mirror: bool = False
    steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _count(self.iters, "block.iters")
        _count(self.seed, "block.seed")
        if not isinstance(self.output_loss, OutputLoss):
            try:
                object.__setattr__(self, "output_loss", OutputLoss(self.output_loss))
            except ValueError:
                raise ConfigError(f"block.output_loss: expected one of {', '.join(m.value for m in OutputLoss)}, "
                                  f"got {self.output_loss!r}") from None
        for name in ("learn_scale", "mirror"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"block.{name}: expected true or false, got {getattr(self, name)!r}")
        if isinstance(self.steps, (str, bytes)) or not isinstance(self.steps, Sequence):
            raise ConfigError(f"block.steps: expected a list of step counts, one per block, got {self.steps!r}")
        object.__setattr__(self, "steps", tuple(_count(n, f"block.steps[{i}]") for i, n in enumerate(self.steps)))

    def to_dict(self) -> dict:
        """The on-disk schema (``output_loss``, ``learn_scale``, ``mirror`` and ``steps`` only
        where they are not the defaults, so configs written before they existed keep their keys)."""
        data = {"iters": self.iters, "seed": self.seed}
        data |= {"output_loss": self.output_loss.value} if self.output_loss is not OutputLoss.MSE else {}
        data |= {"steps": list(self.steps)} if self.steps else {}
        return data | {name: True for name in ("learn_scale", "mirror") if getattr(self, name)}

    @classmethod
    def from_dict(cls, data: Mapping, *, where: str = "block") -> "BlockSettings":
        """Build from the on-disk schema; unknown keys are rejected by name."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)}, key=str)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
        return cls(**data)
