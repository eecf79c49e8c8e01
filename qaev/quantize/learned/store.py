"""Block reconstruction results kept on disk, so rebuilding a config from the same
calibration data (``qaev apply``, an export, a second build) does not learn it again.

A result is stored under a key of everything it depends on: the float model, the
calibration samples, the effective config (grids, ranges, which layers learn) and the
learning options (seed included). Files are written whole or not at all; one that does not
read back is ignored and learned again, never trusted.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from qaev.files import write_atomic
from qaev.quantize.sequential import Fitted
from qaev.quantize.weights import QuantizedWeight

__all__ = ["STORE_VERSION", "result_key", "load_result", "save_result"]

#: Bumped whenever learning changes what a key produces.
STORE_VERSION = 2


def result_key(*, model_sha256: str, data_key: str, config_key: str, options) -> str:
    """The file stem of one reconstruction. Options that change nothing are left out (the
    gains' rate while no gain is learned), so results learned before such an option existed
    keep their keys."""
    chosen = asdict(options)
    if not chosen.get("learn_scale", True):
        chosen.pop("learn_scale")
        chosen.pop("scale_lr", None)
    if not chosen.get("holdout", 1):
        chosen.pop("holdout")
    if chosen.get("target") == "float":
        chosen.pop("target")
    if not chosen.get("steps", 1):
        chosen.pop("steps")
    blob = json.dumps({"v": STORE_VERSION, "model": model_sha256, "data": data_key, "config": config_key,
                       "options": chosen}, sort_keys=True, default=list).encode()
    return "block-" + hashlib.sha256(blob).hexdigest()[:24]


def save_result(folder: Path, key: str, result) -> None:
    """Write a :class:`~qaev.quantize.learned.reconstruct.Reconstruction` as ``key.npz``."""
    arrays, meta = {}, {"layers": {}, "ranges": {k: list(v) for k, v in result.ranges.items()},
                        "blocks": [list(asdict(b).values()) for b in result.blocks], "seconds": result.seconds}
    for i, (name, fit) in enumerate(result.fitted.items()):
        w = fit.weight
        arrays.update({f"q{i}": w.q, f"s{i}": w.scale, f"z{i}": w.zero_point})
        if fit.correction is not None:
            arrays[f"c{i}"] = fit.correction
        meta["layers"][name] = {"i": i, "axis": w.axis, "block_size": w.block_size, "bits": w.bits}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    write_atomic(Path(folder) / f"{key}.npz", buffer.getvalue())


def load_result(folder: Path, key: str):
    """The stored reconstruction of ``key``, or None (absent or unreadable)."""
    from qaev.quantize.learned.reconstruct import BlockReport, Reconstruction

    path = Path(folder) / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            fitted = {}
            for name, m in meta["layers"].items():
                i = m["i"]
                weight = QuantizedWeight(data[f"q{i}"], data[f"s{i}"], data[f"z{i}"], m["axis"], m["block_size"],
                                         m["bits"])
                fitted[name] = Fitted(weight, data[f"c{i}"] if f"c{i}" in data.files else None)
        ranges = {k: (float(lo), float(hi)) for k, (lo, hi) in meta["ranges"].items()}
        blocks = tuple(BlockReport(*b) for b in meta["blocks"])
        return Reconstruction(fitted=fitted, ranges=ranges, blocks=blocks, seconds=float(meta["seconds"]))
    except Exception:  # a corrupt or foreign file is learned again, never trusted
        return None
