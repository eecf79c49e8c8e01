"""Which model outputs a metric reads, and how a run's batches become one array per output
with the items along the first axis.

Labelled metrics read the first output, items along its first axis, as they always have.
Label-free metrics compare with the float model whatever the outputs look like:

- the item axis of an output is where its declared shape names the inputs' batch dim
  (``[T, N, C]`` from a sequence model: axis 1), else axis 0;
- a whole-feed dataset (:attr:`qaev.data.ArrayDataset.feeds`) gives one item per run, the
  output stacked whole;
- output SQNR reads every float output whose shape is fixed apart from the item axis
  (several heads, an encoder's states), each scaled by the float model's RMS so that every
  output weighs the same; a data-dependent output (detections after NMS) is left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Mapping

import numpy as np
import onnx
import onnxruntime as ort

from qaev.errors import DataError
from qaev.model.graph import FloatModel
from qaev.model.session import check_session_feed

__all__ = ["OutputLayout", "output_layout", "collect", "combine", "block_scales"]


@dataclass(frozen=True)
class OutputLayout:
    """Outputs read (in order), the item axis of each, and whether each run is one item."""

    names: tuple[str, ...]
    axes: tuple[int, ...]
    stacked: bool = False


def _declared(value: onnx.ValueInfoProto) -> list | None:
    tt = value.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]


def _item_axis(dims: list | None, batch_names: set) -> int:
    if dims:
        for axis, dim in enumerate(dims):
            if isinstance(dim, str) and dim in batch_names:
                return axis
    return 0


def _comparable(value: onnx.ValueInfoProto, axis: int, *, stacked: bool) -> bool:
    """A float output whose shape is fixed apart from its item axis."""
    if value.type.tensor_type.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
        return False
    dims = _declared(value)
    return dims is not None and all((not stacked and i == axis) or (isinstance(d, int) and d > 0)
                                    for i, d in enumerate(dims))


def output_layout(model: FloatModel, *, label_free: bool, every_output: bool, stacked: bool) -> OutputLayout:
    """The layout a metric reads ``model``'s outputs in (see the module notes).

    Args:
        label_free: the metric compares with the float model (item axes from the shapes).
        every_output: read every comparable output (output SQNR), not the first only.
        stacked: each batch is one whole-feed item.
    """
    outputs = list(model.proto.graph.output)
    if not label_free:
        return OutputLayout((outputs[0].name,), (0,), stacked)
    batch_names = {dims[0] for dims in (_declared(v) for v in model.inputs.values())
                   if dims and isinstance(dims[0], str)}
    axes = [_item_axis(_declared(v), batch_names) for v in outputs]
    chosen = [0]
    if every_output:
        chosen = [i for i, v in enumerate(outputs) if _comparable(v, axes[i], stacked=stacked)] or [0]
    return OutputLayout(tuple(outputs[i].name for i in chosen), tuple(axes[i] for i in chosen), stacked)


def _per_item(out: np.ndarray, name: str, axis: int, stacked: bool) -> np.ndarray:
    if stacked:
        return out[None]
    if out.ndim == 0:
        raise DataError(f"model output {name!r} is one scalar per run, not one value per sample; "
                        "give whole inputs per sample, or measure another output")
    return np.moveaxis(out, axis, 0) if axis else out


def _joined(parts: list[np.ndarray], name: str) -> np.ndarray:
    shapes = {p.shape[1:] for p in parts}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        raise DataError(f"model output {name!r} changes shape from run to run ({list(a)} vs {list(b)} per sample): "
                        "qaev compares outputs of a fixed shape")
    out = np.concatenate(parts, axis=0)
    if np.issubdtype(out.dtype, np.floating) and not np.all(np.isfinite(out)):
        raise DataError(f"model output {name!r} contains NaN or Inf")
    return out


def collect(session: ort.InferenceSession, batches: Iterable[Mapping[str, np.ndarray]],
            layout: OutputLayout, *, check: Callable[[Mapping[str, np.ndarray]], None] | None = None
            ) -> list[np.ndarray]:
    """Run every batch; one array per output of ``layout``, items along axis 0. The first
    batch is checked with ``check`` (the float model's :meth:`~qaev.model.graph.FloatModel.check_feed`,
    which knows an input of unknown rank from a scalar), else against the session's inputs.

    Raises:
        DataError: inputs do not match the model, a run fails, there is no data, an output
            changes shape or holds NaN/Inf.
    """
    parts: list[list[np.ndarray]] = [[] for _ in layout.names]
    for i, feed in enumerate(batches):
        if i == 0:
            (check or partial(check_session_feed, session))(feed)
        try:
            outs = session.run(list(layout.names), dict(feed))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"running the model failed on batch {i}: {first}") from None
        for k, (name, out) in enumerate(zip(layout.names, outs)):
            parts[k].append(_per_item(np.asarray(out), name, layout.axes[k], layout.stacked))
    if not parts[0]:
        raise DataError("the dataset is empty")
    return [_joined(p, name) for p, name in zip(parts, layout.names)]


def block_scales(blocks: list[np.ndarray]) -> tuple[float, ...]:
    """1 / RMS of each of the float model's output blocks (1 for an all-zero block)."""
    scales = []
    for block in blocks:
        rms = float(np.sqrt(np.mean(np.square(block.astype(np.float64))))) if block.size else 0.0
        scales.append(1.0 / rms if rms > 0 else 1.0)
    return tuple(scales)


def combine(blocks: list[np.ndarray], scales: tuple[float, ...] | None) -> np.ndarray:
    """One output array: the block itself, or several blocks flattened per item, scaled
    and joined (``[N, sum of sizes]``)."""
    if len(blocks) == 1:
        return blocks[0]
    return np.concatenate([(b.reshape(len(b), -1) * s).astype(np.float32) for b, s in zip(blocks, scales)], axis=1)
