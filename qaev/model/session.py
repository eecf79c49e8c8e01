"""ONNX Runtime sessions built from bytes with one fixed optimisation level, and batched runs."""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import onnx
import onnxruntime as ort

from qaev.errors import DataError, ModelError
from qaev.model.graph import check_inputs

__all__ = ["make_session", "run_batches", "check_session_feed", "set_nbits_accuracy", "nbits_accuracy_of",
           "OPT_LEVEL", "ORT_LEVELS"]

#: Model metadata key carrying the ``accuracy_level`` the fused ``MatMulNBits`` of a QDQ
#: evaluation graph run at (:attr:`qaev.config.QuantConfig.nbits_accuracy`).
NBITS_ACCURACY_KEY = "qaev.nbits_accuracy"

_LEVELS = {"extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
           "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
           "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}


#: ONNX Runtime optimisation levels by name. Every fitness evaluation of a run uses one
#: (accuracy shifts by tenths between levels): ``extended`` (the default) is where the
#: runtime fuses QDQ groups into integer kernels; ``disable`` evaluates Q/DQ in float (the
#: integer model's arithmetic without a host kernel's quirks, e.g. the 16-bit saturation of
#: u8 x s8 kernels on x86 CPUs without VNNI).
ORT_LEVELS = ("extended", "basic", "disable")


def _level(name: str) -> ort.GraphOptimizationLevel:
    if name not in ORT_LEVELS:
        raise ModelError(f"ORT optimisation level: {name!r} is not one of {', '.join(ORT_LEVELS)}")
    return _LEVELS[name]


OPT_LEVEL = _LEVELS["extended"]


def set_nbits_accuracy(model: onnx.ModelProto, level: int) -> None:
    """Records in ``model``'s metadata the ``accuracy_level`` at which ONNX Runtime should
    run the ``MatMulNBits`` it fuses from block-wise weight-only Q/DQ groups."""
    kept = [p for p in model.metadata_props if p.key != NBITS_ACCURACY_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=NBITS_ACCURACY_KEY, value=str(int(level)))


def nbits_accuracy_of(model: onnx.ModelProto | bytes) -> int:
    """The fused ``MatMulNBits`` accuracy level ``model`` asks for (0 when it says nothing
    or is given as bytes)."""
    if isinstance(model, bytes):
        return 0
    values = [p.value for p in model.metadata_props if p.key == NBITS_ACCURACY_KEY]
    return int(values[-1]) if values else 0


def make_session(model: onnx.ModelProto | bytes, *, threads: int = 1, level: str = "extended",
                 optimized_path: str | None = None, profile_prefix: str | None = None) -> ort.InferenceSession:
    """An ORT CPU session.

    Args:
        model: the model or its serialised bytes.
        threads: intra-op threads (1 per worker when evaluating in parallel).
        level: optimisation level, one of :data:`ORT_LEVELS`.
        optimized_path: where to write the optimised graph (for inspection), if given.
        profile_prefix: record ORT's per-node profile into files starting so, if given
            (``session.end_profiling()`` names the file).
    """
    data = model if isinstance(model, bytes) else model.SerializeToString()
    options = ort.SessionOptions()
    options.graph_optimization_level = _level(level)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Weight-only block-wise MatMuls fuse to MatMulNBits; keep their arithmetic in fp32 so
    # the measured model is the weight-only model the config describes, unless the model
    # asks for another accuracy level (set_nbits_accuracy; the exported file's nodes carry it).
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", str(nbits_accuracy_of(model) or 1))
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"ONNX Runtime cannot load the model: {first}") from None


_ORT_TYPES = {"tensor(float)": np.dtype(np.float32), "tensor(double)": np.dtype(np.float64),
              "tensor(int64)": np.dtype(np.int64), "tensor(int32)": np.dtype(np.int32),
              "tensor(float16)": np.dtype(np.float16), "tensor(uint8)": np.dtype(np.uint8),
              "tensor(int8)": np.dtype(np.int8), "tensor(bool)": np.dtype(np.bool_)}


def check_session_feed(session: ort.InferenceSession, feed: Mapping[str, np.ndarray]) -> None:
    """Check a feed's names, dtypes and shapes against ``session``'s inputs.

    Raises:
        DataError: naming the input and what differs.
    """
    check_inputs(feed, {i.name: (_ORT_TYPES.get(i.type), list(i.shape)) for i in session.get_inputs()})


def run_batches(session: ort.InferenceSession, batches: Iterable[Mapping[str, np.ndarray]], *,
                output: str | None = None,
                reduce: Callable[[np.ndarray, Mapping[str, np.ndarray]], np.ndarray] | None = None) -> np.ndarray:
    """Run every batch and concatenate one output along the first axis.

    Args:
        session: the session.
        batches: feed dicts.
        output: the output to keep (default: the first).
        reduce: ``(output, feed) -> rows`` applied to each batch's output before it is kept
            (a metric's reduction: per-token log-likelihoods instead of a language model's
            logits), or None.

    Raises:
        DataError: inputs do not match the model, there is no data, or outputs are NaN/Inf.
    """
    name = output or session.get_outputs()[0].name
    parts = []
    for i, feed in enumerate(batches):
        if i == 0:
            check_session_feed(session, feed)
        try:
            out = session.run([name], dict(feed))[0]
        except Exception as exc:
            first = str(exc).strip().splitlines()[0]
            raise DataError(f"running the model failed on batch {i}: {first}") from None
        parts.append(out if reduce is None else reduce(out, feed))
    if not parts:
        raise DataError("the dataset is empty")
    out = np.concatenate(parts, axis=0)
    if not np.all(np.isfinite(out)):
        raise DataError(f"model output {name!r} contains NaN or Inf")
    return out
