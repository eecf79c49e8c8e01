"""Writing a quantized model: a file qaev writes loads in ONNX Runtime and runs on a sample,
or it is not written.

The sample is the first calibration item when the command has data, else an input made
from the model's input shapes (dynamic dims 1, floats standard normal, integers 0). When
the float model itself cannot run on a made-up input (it needs real token ids, a dim of
a particular size), only loading is checked.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
from onnx import helper

from qaev.errors import ModelError
from qaev.files import write_atomic
from qaev.model.graph import FloatModel
from qaev.model.session import make_session

__all__ = ["write_model", "sample_feed"]


def sample_feed(model: FloatModel) -> dict[str, np.ndarray]:
    """One input made from ``model``'s input shapes (dynamic dims set to 1)."""
    feed = {}
    for name, value in model.inputs.items():
        tt = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tt.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.dtype(np.float32)
        rng = np.random.default_rng(0)
        feed[name] = (rng.standard_normal(dims).astype(dtype) if np.dtype(dtype).kind == "f"
                      else np.zeros(dims, dtype))
    return feed


def _outputs(data: bytes | onnx.ModelProto, feed: Mapping[str, np.ndarray]) -> list[np.ndarray] | None:
    try:
        session = make_session(data)
        return session.run(None, dict(feed))
    except Exception:
        return None


def _check(data: bytes, reference: FloatModel, sample: Mapping[str, np.ndarray] | None, out: Path) -> None:
    try:
        session = make_session(data)
    except ModelError as exc:
        raise ModelError(f"{out}: not written: the quantized model does not load ({exc})") from None
    feed = dict(sample) if sample is not None else sample_feed(reference)
    expected = _outputs(reference.proto, feed)
    if expected is None:
        return  # the float model does not run on this input either: loading is what can be checked
    try:
        got = session.run(None, feed)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{out}: not written: the quantized model does not run on a sample ({first})") from None
    for want, have in zip(expected, got):
        if (np.issubdtype(np.asarray(want).dtype, np.floating) and np.all(np.isfinite(want))
                and not np.all(np.isfinite(have))):
            raise ModelError(f"{out}: not written: the quantized model gives NaN or Inf on a sample "
                             "where the float model does not")


def write_model(proto: onnx.ModelProto, out: Path, *, reference: FloatModel,
                sample: Mapping[str, np.ndarray] | None = None) -> int:
    """Check ``proto`` (it loads and runs on ``sample``, see the module notes), then write it
    to ``out`` atomically; returns the bytes written.

    Raises:
        ModelError: the model does not load or run; nothing is written.
    """
    out = Path(out)
    data = proto.SerializeToString()
    _check(data, reference, sample, out)
    write_atomic(out, data)
    return len(data)
