"""External tensor data, resolved against the model's own folder and read into the model
before anything else (ONNX Runtime included) sees it.

Every tensor counts: initializers and sparse initializers, tensors held in node attributes
(``Constant`` values, ``ConstantOfShape`` fills, sparse attributes), in the bodies of
If/Loop/Scan nodes at any depth and in model-local functions. A location that is absolute,
climbs out of the folder (``..``, a symbolic link) or names no file is refused; a model
that did not come from a file may hold no external data at all. qaev hands ONNX Runtime
bytes, and ORT resolves a location left in them against the current directory, so a model
could otherwise make qaev read, and embed, a file from wherever it runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import onnx

from qaev.errors import ModelError

__all__ = ["all_tensors", "inline_external_data", "uses_external_data"]

_MAX_BYTES = 2 * 1024**3


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _node_tensors(node)


def _node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        sparse = ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors)
        for s in sparse:
            yield s.values
            yield s.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for graph in attr.graphs:
            yield from _graph_tensors(graph)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of ``model``: the graph's, its subgraphs' at any depth, and those of
    model-local functions."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _node_tensors(node)


def uses_external_data(tensor: onnx.TensorProto) -> bool:
    """Whether ``tensor`` points at data outside the model (by location or by entries)."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.external_data) > 0


def _entries(tensor: onnx.TensorProto, where: str) -> tuple[str, int, int | None]:
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        raise ModelError(f"{where}: tensor {tensor.name!r} has a malformed external data offset or length") from None
    if not location or offset < 0 or (length is not None and length < 0):
        raise ModelError(f"{where}: tensor {tensor.name!r} has external data without a valid location, "
                         "offset or length")
    return location, offset, length


def _target(base: Path, location: str, tensor: onnx.TensorProto, where: str) -> Path:
    root = base.resolve()
    target = (root / location).resolve()
    if os.path.isabs(location) or root not in target.parents:
        raise ModelError(f"{where}: external data path {location!r} of tensor {tensor.name!r} "
                         "escapes the model's folder")
    if not target.is_file():
        raise ModelError(f"{where}: external data file {location!r} of tensor {tensor.name!r} is missing")
    return target


def _read(target: Path, offset: int, length: int | None, tensor: onnx.TensorProto, where: str) -> bytes:
    size = target.stat().st_size
    end = size if length is None else offset + length
    if offset > size or end > size or end - offset > _MAX_BYTES:
        raise ModelError(f"{where}: external data of tensor {tensor.name!r} asks for bytes {offset}..{end} "
                         f"of {target.name}, which holds {size}")
    with open(target, "rb") as fh:
        fh.seek(offset)
        return fh.read(end - offset)


def inline_external_data(model: onnx.ModelProto, base: Path | None, where: str) -> None:
    """Check every external reference of ``model`` against its folder ``base`` and read the
    data into the tensors, so the model no longer refers to any file.

    Raises:
        ModelError: a location escapes ``base`` or is missing, an offset or length is
            malformed or past the file's end, or ``base`` is None (a model from bytes).
    """
    external = [t for t in all_tensors(model) if uses_external_data(t)]
    if external and base is None:
        raise ModelError(f"{where}: tensor {external[0].name!r} uses external data "
                         "but the model was not read from a file")
    total = 0
    for tensor in external:  # every location is checked before any file is read
        _target(base, _entries(tensor, where)[0], tensor, where)
    for tensor in external:
        location, offset, length = _entries(tensor, where)
        data = _read(_target(base, location, tensor, where), offset, length, tensor, where)
        total += len(data)
        if total > _MAX_BYTES:
            raise ModelError(f"{where}: external data over 2 GiB is not supported")
        tensor.raw_data = data
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]
