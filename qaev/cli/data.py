"""Where a command's model and data come from: a registered problem or a model file plus
data options, as the run spec's source."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from qaev.cli.options import data_options_from
from qaev.data.parts import Parts
from qaev.errors import ConfigError
from qaev.search.spec import ModelSource, ProblemSource

__all__ = ["data_source", "resolve_data"]


def data_source(model: Path | None, problem: str | None,
                kwargs: dict) -> tuple[ProblemSource | ModelSource, str | None]:
    """Pop the data options from ``kwargs``: the source they describe (default: the bundled
    digits problem) and the metric they ask for instead of a problem's own (None)."""
    options = data_options_from(kwargs, bundled=model is None)
    if model is not None and problem is not None:
        raise ConfigError("give either MODEL or --problem, not both")
    if model is None:
        extra = {"data": str(options.data)} if options.data is not None else {}
        source = ProblemSource(problem=problem or "digits",
                               options={"calib": options.calib, "eval": options.eval, "seed": options.seed, **extra})
        return source, options.metric
    return ModelSource(model=str(Path(model).resolve()), data=options), None


def resolve_data(model: Path | None, problem: str | None, kwargs: dict) -> Parts:
    """Pop the data options from ``kwargs`` and load what they describe."""
    source, metric = data_source(model, problem, kwargs)
    parts = source.load()
    return replace(parts, metric=metric) if metric else parts
