"""Where a command's model and data come from: a registered problem or a model file plus
data options."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qaev.cli.options import data_options_from
from qaev.errors import ConfigError
from qaev.model.graph import FloatModel, load_model
from qaev.data.tasks import load_task

__all__ = ["Resolved", "resolve_data"]


@dataclass(frozen=True)
class Resolved:
    """A command's float model, data splits and metric."""

    model: FloatModel
    calib: object
    eval: object
    metric: str
    problem: str | None = None
    test: object = None
    full: object = None

    @property
    def reference_data(self):
        """Where a float model's figure is quoted: the held-out test split, else the
        problem's full set, else the evaluation split."""
        return self.test or self.full or self.eval

    @property
    def held_out(self):
        """Where a quantized model is measured: never the calibration data (the test split,
        else the evaluation split)."""
        return self.test or self.eval


def resolve_data(model: Path | None, problem: str | None, kwargs: dict) -> Resolved:
    """Pop the data options from ``kwargs`` and load what they describe (default: the
    bundled digits problem)."""
    from qaev.problems import problem_parts

    options = data_options_from(kwargs, bundled=model is None)
    if model is not None and problem is not None:
        raise ConfigError("give either MODEL or --problem, not both")
    if model is None:
        name = problem or "digits"
        extra = {"data": options.data} if options.data is not None else {}
        parts = problem_parts(name, calib=options.calib, eval=options.eval, seed=options.seed, **extra)
        return Resolved(parts.model, parts.calib, parts.eval, options.metric or parts.metric, name,
                        test=parts.test, full=parts.full)
    float_model = load_model(model)
    task = load_task(options, float_model)
    return Resolved(float_model, task.calib, task.eval, task.metric)
