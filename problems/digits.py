"""``digits``: the bundled CNN on scikit-learn's digits (300 calibration / 497 test), top-1."""
from __future__ import annotations

from qaev.data.parts import Parts, ProblemSpec

__all__ = ["SPEC"]


def _parts(*, calib: int | None = None, eval: int | None = None, **_) -> Parts:
    from qaev.data import digits_model_path, load_digits_split
    from qaev.model.graph import load_model

    c, e = load_digits_split("calib"), load_digits_split("test")
    return Parts(load_model(digits_model_path()), c.head(calib) if calib else c, e.head(eval) if eval else e, "top1",
                 full=e)


def _model_path():
    from qaev.data import digits_model_path

    return digits_model_path()


SPEC = ProblemSpec("digits", "bundled CNN on scikit-learn digits (300 calib / 497 test), top-1", _parts, _model_path)
