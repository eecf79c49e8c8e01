"""Inputs generated from a model's input shapes, when a label-free run has no data.

Every static dimension the model declares is kept. When all inputs lead with one batch
axis (dynamic, or 1 everywhere) the samples are stacked along it, as real data would be;
otherwise (a ``[2, 1, 128]`` recurrent state, a scalar sample rate, a fixed batch of 8)
each generated item is one whole input of exactly the declared shape
(:attr:`ArrayDataset.feeds`). A dynamic dim takes its value from ``--shape``; a dim named
like an input's leading batch dim is 1; any other dynamic dim needs ``--shape``.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import helper

from qaev.data.arrays import ArrayDataset
from qaev.data.feeds import synthetic_dataset
from qaev.errors import DataError
from qaev.model.graph import FloatModel

__all__ = ["generated_dataset", "batched_inputs", "MAX_GENERATED_BYTES"]

#: The most memory generated inputs may take (a huge ``--shape`` is refused, not allocated).
MAX_GENERATED_BYTES = 2 * 1024**3


def _dims(model: FloatModel, shapes: dict | None = None) -> dict[str, list]:
    """Input name -> declared dims: ints, dim_param strings, or None for unnamed dynamic dims;
    an input that declares no shape at all takes its ``--shape`` (batch dim dynamic).

    Raises:
        DataError: an input declares no shape and ``--shape`` gives none.
    """
    out = {}
    for name, value in model.inputs.items():
        tt = value.type.tensor_type
        if not tt.HasField("shape"):
            given = (shapes or {}).get(name)
            if given is None:
                raise DataError(f"input {name!r} declares no shape; give --shape {name}=1x...")
            out[name] = [None, *given[1:]] if given else []
            continue
        out[name] = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
                     for d in tt.shape.dim]
    return out


def batched_inputs(model: FloatModel, shapes: dict | None = None) -> bool:
    """Whether every input leads with a shared batch axis: dynamic, or 1 in every input."""
    firsts = [dims[0] if dims else "scalar" for dims in _dims(model, shapes).values()]
    if "scalar" in firsts:
        return False
    return all(not isinstance(d, int) for d in firsts) or all(d == 1 for d in firsts)


def _full_shape(name: str, dims: list, given, batch_names: set, *, batched: bool) -> tuple[int, ...]:
    if given is not None:
        if len(given) != len(dims):
            raise DataError(f"--shape {name}: {len(given)} dims given, the model's input has {len(dims)}")
        bad = [(i, g, d) for i, (g, d) in enumerate(zip(given, dims)) if isinstance(d, int) and g != d]
        if bad and not (batched and bad[0][0] == 0):
            i, g, d = bad[0]
            raise DataError(f"--shape {name}: dim {i} is {g}, the model fixes it at {d}")
        dims = list(given)
    shape = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int):
            shape.append(dim)
        elif axis == 0 or dim in batch_names:
            shape.append(1)
        else:
            raise DataError(f"input {name!r}: dim {axis} is dynamic; give --shape {name}=1x...")
    if any(d < 1 for d in shape):
        raise DataError(f"--shape {name}: dims must be positive, got {shape}")
    return tuple(shape)


def generated_dataset(model: FloatModel, shapes: dict, *, n: int, seed: int) -> ArrayDataset:
    """About ``n`` generated samples for ``model`` (see the module notes), named
    ``generated``: ``n`` items, or as whole inputs of a fixed batch ``B``, ``n / B`` of
    them (at least 32).

    Raises:
        DataError: a dynamic dim without ``--shape``, a ``--shape`` that contradicts a
            static dim, an unsupported dtype, or inputs over :data:`MAX_GENERATED_BYTES`.
    """
    declared = _dims(model, shapes)
    batched = batched_inputs(model, shapes)
    batch_names = {dims[0] for dims in declared.values() if dims and isinstance(dims[0], str)}
    specs = {}
    for name, value in model.inputs.items():
        tt = value.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else np.dtype(np.float32)
        full = _full_shape(name, declared[name], shapes.get(name), batch_names, batched=batched)
        specs[name] = (full[1:] if batched else full, np.dtype(dtype))
    if not batched:
        n = max(32, n // max(1, max(shape[0] if shape else 1 for shape, _ in specs.values())))
    total = sum(n * math.prod(shape) * dtype.itemsize for shape, dtype in specs.values())
    if total > MAX_GENERATED_BYTES:
        raise DataError(f"generated inputs would take {total / 1024**3:.3g} GiB ({n} samples of "
                        f"{', '.join(f'{k}{list(v[0])}' for k, v in specs.items())}); give smaller --shape "
                        "values or --data")
    data = synthetic_dataset(specs, n=n, seed=seed)
    return ArrayDataset(data.inputs, name="generated", feeds=not batched)
