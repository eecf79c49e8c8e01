"""``minilm-l6-stsb``: all-MiniLM-L6-v2 sentence embeddings on STS-B: calibration and search
pairs from dev (seeded; 200 calibration), held-out test (1379 pairs), Spearman x100."""
from __future__ import annotations

from qaev.data.parts import Parts, ProblemSpec

__all__ = ["SPEC"]


def _model_path():
    from qaev.problems.minilm import minilm_model_path

    return minilm_model_path()


def _parts(*, data=None, calib: int | None = None, eval: int | None = None, seed: int = 0, **_) -> Parts:
    from qaev.model.graph import load_model
    from qaev.problems._data import DEFAULT_CALIB, folder
    from qaev.problems.minilm import load_minilm_stsb

    where = folder(data, "stsb")
    dev = load_minilm_stsb(where, split="dev")
    first, second = dev.split(n_first=calib or DEFAULT_CALIB, n_second=eval, seed=seed)
    test = load_minilm_stsb(where, split="test")
    return Parts(load_model(_model_path()), first, second, "spearman", test=test, full=test)


SPEC = ProblemSpec("minilm-l6-stsb", "all-MiniLM-L6-v2 sentence embeddings on STS-B: calib + search on dev, "
                   "held-out test (1379 pairs), Spearman x100", _parts, _model_path)
