"""``llama-pydocs``: the small LLaMA-architecture decoder (:mod:`qaev.problems.llama`) on the
Python documentation: calibration windows from ``train.txt``, search windows from
``valid.txt`` (the rest of valid set apart to choose the shipped point on), held-out test
``test.txt``; perplexity, its drop in percent of float's (positive is worse).

The three files hold different documents, so the windows are disjoint. ``data`` may name
another folder holding the three files, or any text file or folder of ``.txt`` files: its
windows are then split (seeded) into calibration and evaluation windows, and ``qaev
evaluate --problem llama-pydocs --data FILE.txt`` measures all of them. Host latency is one
decoding step with the cache of a 128-token prompt, batch 1: milliseconds per token.
"""
from __future__ import annotations

from pathlib import Path

from qaev.data.parts import Parts, ProblemSpec

__all__ = ["SPEC", "SPLITS", "DEFAULT_CALIB_WINDOWS", "DEFAULT_EVAL_WINDOWS"]

#: The files of a pydocs-style folder.
SPLITS = ("train.txt", "valid.txt", "test.txt")
#: Calibration windows (of 256 tokens) unless ``calib`` says otherwise.
DEFAULT_CALIB_WINDOWS = 128
#: Search windows from valid unless ``eval`` says otherwise (the rest of valid is the validation split).
DEFAULT_EVAL_WINDOWS = 128


def _model_path():
    from qaev.problems.llama import llama_model_path

    return llama_model_path()


def _split_folder(where: Path, model, *, calib: int, eval: int, seed: int) -> dict:
    from qaev.problems.llama import load_llama_windows

    train, valid, test = (load_llama_windows(where / f, model, name=f"pydocs-{f[:-4]}") for f in SPLITS)
    chosen, _ = train.split(n_first=min(calib, len(train) - 1), n_second=None, seed=seed)
    if eval >= len(valid) - 1:
        return dict(calib=chosen, eval=valid, test=test, full=test)
    search, validation = valid.split(n_first=eval, n_second=None, seed=seed)
    return dict(calib=chosen, eval=search, test=test, full=test, validation=validation)


def _split_text(where: Path, model, *, calib: int | None, eval: int | None, seed: int) -> dict:
    from qaev.problems.llama import load_llama_windows

    windows = load_llama_windows(where, model)
    n_calib = calib or max(1, min(DEFAULT_CALIB_WINDOWS, len(windows) // 4))
    first, second = windows.split(n_first=n_calib, n_second=eval, seed=seed)
    return dict(calib=first, eval=second, full=windows)


def _parts(*, data=None, calib: int | None = None, eval: int | None = None, seed: int = 0, **_) -> Parts:
    from qaev.model.graph import load_model
    from qaev.problems._data import folder
    from qaev.problems.llama import LLAMA_PROMPT, llama_decode_feed

    model = load_model(_model_path())
    where = folder(data, "pydocs")
    if where.is_dir() and all((where / f).is_file() for f in SPLITS):
        splits = _split_folder(where, model, calib=calib or DEFAULT_CALIB_WINDOWS, eval=eval or DEFAULT_EVAL_WINDOWS,
                               seed=seed)
    else:
        splits = _split_text(where, model, calib=calib, eval=eval, seed=seed)
    return Parts(model, metric="perplexity", host_feed=llama_decode_feed(model, splits["eval"]),
                 host_feed_label=f"one decoded token after a {LLAMA_PROMPT}-token prompt, with its key/value cache, "
                 "batch 1", **splits)


SPEC = ProblemSpec("llama-pydocs", "LLaMA-architecture decoder (5.0M, trained here) on the Python docs: calib on "
                   "train, search on 128 valid windows, held-out test.txt; perplexity (drop in %), decode ms/token",
                   _parts, _model_path)
