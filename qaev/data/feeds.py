"""Model inputs from ``.npy`` / ``.npz`` files, and synthetic inputs from shapes."""
from __future__ import annotations

import math
import os
import pathlib
import zipfile
from typing import Mapping, Sequence

import numpy as np

from qaev.data.arrays import ArrayDataset
from qaev.errors import DataError

__all__ = ["LABELS_KEY", "load_feed_folder", "synthetic_dataset"]

#: Optional key in ``.npz`` feed files holding the labels of that file's samples.
LABELS_KEY = "labels"


def _claimed_bytes(fh) -> int:
    """Bytes the ``.npy`` header read from ``fh`` says the array holds."""
    version = np.lib.format.read_magic(fh)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        return 0  # a newer header: loading checks it
    shape, _, dtype = read(fh, max_header_size=10000)
    if dtype.hasobject:
        raise ValueError("it holds Python objects (pickled); qaev reads numeric arrays only")
    return math.prod(shape) * dtype.itemsize


def _check_sizes(path: pathlib.Path) -> None:
    """Refuse arrays whose headers claim more bytes than the file holds (damaged, or made to
    exhaust memory) before anything is allocated."""
    if path.suffix == ".npy":
        with open(path, "rb") as fh:
            claimed, held = _claimed_bytes(fh), path.stat().st_size - fh.tell()
        if claimed > held:
            raise DataError(f"{path}: its header claims {claimed} bytes of data, the file holds {held}")
        return
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with archive.open(info) as fh:
                    claimed = _claimed_bytes(fh)
                if claimed > info.file_size:
                    raise DataError(f"{path}: array {info.filename[:-4]!r} claims {claimed} bytes of data, "
                                    f"the file holds {info.file_size}")


def _read(path: pathlib.Path, input_names: Sequence[str]) -> dict[str, np.ndarray]:
    try:
        _check_sizes(path)
        if path.suffix == ".npy":
            return {input_names[0]: np.load(path, allow_pickle=False)}
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [name for name in input_names if name not in keys]
            extra = sorted(keys - set(input_names) - {LABELS_KEY})
            if missing or extra:
                raise DataError(f"{path}: keys {sorted(keys)} do not match the inputs "
                                f"{list(input_names)} (missing {missing}, unexpected {extra})")
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError, NotImplementedError) as exc:
        raise DataError(f"{path}: cannot read array file ({type(exc).__name__}: {exc})") from None


def load_feed_folder(path: str | os.PathLike, *, input_names: Sequence[str],
                     dtypes: Mapping[str, np.dtype] | None = None,
                     per_sample: bool = False) -> ArrayDataset:
    """Loads model inputs saved as ``.npy`` or ``.npz`` files in one folder.

    Files are read in filename order and concatenated along axis 0. ``.npy`` files
    serve single-input models; ``.npz`` files hold one array per input name and may
    add a ``labels`` array (in all files or in none).

    Args:
        path: The folder.
        input_names: The model's input names.
        dtypes: Expected dtype per input name (for example from the model); by default
            only consistency across files is checked.
        per_sample: Each file holds one sample without a batch axis (stacked), instead
            of arrays whose first axis is the sample axis (concatenated).

    Returns:
        The dataset, named after the folder.

    Raises:
        DataError: No folder or files, ``.npy`` files for a multi-input model, mixed
            file types, or a file whose keys, dtype or per-sample shape differ (the
            message names the file).
    """
    folder = pathlib.Path(path).expanduser()
    names = [str(name) for name in input_names]
    files = _feed_files(folder, names)
    parts: dict[str, list[np.ndarray]] = {}
    first: dict[str, tuple[pathlib.Path, np.ndarray]] = {}
    for file in files:
        arrays = _read(file, names)
        if (LABELS_KEY in arrays) != (LABELS_KEY in first) and first:
            raise DataError(f"{file}: '{LABELS_KEY}' must be present in all files or in none")
        for key, array in arrays.items():
            if per_sample:
                array = array[None]
            _check_array(file, key, array, dtypes=dtypes, first=first)
            first.setdefault(key, (file, array))
            parts.setdefault(key, []).append(array)
    arrays = {key: np.concatenate(chunks, axis=0) for key, chunks in parts.items()}
    labels = arrays.pop(LABELS_KEY, None)
    return ArrayDataset({name: arrays[name] for name in names}, labels=labels, name=folder.name)


def _feed_files(folder: pathlib.Path, names: list[str]) -> list[pathlib.Path]:
    """The ``.npy`` or ``.npz`` files of ``folder``, in filename order.

    Raises:
        DataError: No input names, no folder or files, mixed file types, or ``.npy``
            files for a multi-input model.
    """
    if not names:
        raise DataError(f"{folder}: no input names given")
    if not folder.is_dir():
        raise DataError(f"{folder}: feed folder not found")
    files = sorted(p for p in folder.iterdir() if p.suffix in (".npy", ".npz") and p.is_file())
    if not files:
        raise DataError(f"{folder}: no .npy or .npz files")
    suffixes = {p.suffix for p in files}
    if len(suffixes) > 1:
        raise DataError(f"{folder}: mixes .npy and .npz files")
    if ".npy" in suffixes and len(names) != 1:
        raise DataError(f"{folder}: .npy files need a single-input model, inputs are {names}")
    return files


def _check_array(file: pathlib.Path, key: str, array: np.ndarray, *, dtypes: Mapping[str, np.dtype] | None,
                 first: Mapping[str, tuple[pathlib.Path, np.ndarray]]) -> None:
    """Checks one array of ``file`` (batch axis already added) against the expected dtype
    and the first file's array of the same ``key``.

    Raises:
        DataError: A scalar, a dtype other than ``dtypes[key]``, or a dtype or per-sample
            shape other than the first file's.
    """
    if array.ndim == 0:
        raise DataError(f"{file}: {key!r} is a scalar; use per_sample=True")
    expected = None if dtypes is None or key == LABELS_KEY else dtypes.get(key)
    if expected is not None and array.dtype != np.dtype(expected):
        raise DataError(f"{file}: {key!r} has dtype {array.dtype}, "
                        f"the model expects {np.dtype(expected)}")
    if key in first:
        ref_file, ref = first[key]
        if array.dtype != ref.dtype or array.shape[1:] != ref.shape[1:]:
            raise DataError(
                f"{file}: {key!r} is {array.dtype}{list(array.shape[1:])} per sample, "
                f"but {ref_file.name} has {ref.dtype}{list(ref.shape[1:])}")


def synthetic_dataset(input_specs: Mapping[str, tuple[tuple[int, ...], np.dtype]], *,
                      n: int, seed: int) -> ArrayDataset:
    """Random inputs for a model with no data (smoke tests, label-free calibration).

    Floats are standard normal; integers are uniform in 0..9; booleans are fair coins.

    Args:
        input_specs: Input name -> (per-sample shape without the batch axis, dtype).
        n: Number of samples, at least 1.
        seed: Seed of ``numpy.random.default_rng``.

    Returns:
        Unlabelled dataset named ``synthetic``.

    Raises:
        DataError: ``n < 1``, no inputs, a non-positive dimension or an unsupported dtype.
    """
    if n < 1:
        raise DataError(f"synthetic dataset needs n >= 1, got {n}")
    if not input_specs:
        raise DataError("synthetic dataset needs at least one input spec")
    rng = np.random.default_rng(seed)
    inputs: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in input_specs.items():
        dims = tuple(shape)
        if not all(isinstance(d, (int, np.integer)) and d >= 1 for d in dims):
            raise DataError(f"input {name!r}: shape {dims} needs positive integer dimensions")
        dt = np.dtype(dtype)
        full = (n, *dims)
        if dt.kind == "f":
            inputs[name] = rng.standard_normal(full, dtype=np.float32 if dt == np.float32 else np.float64).astype(
                dt, copy=False)
        elif dt.kind in "iu":
            inputs[name] = rng.integers(0, 10, size=full).astype(dt)
        elif dt.kind == "b":
            inputs[name] = rng.integers(0, 2, size=full).astype(bool)
        else:
            raise DataError(f"input {name!r}: unsupported dtype {dt}")
    return ArrayDataset(inputs, labels=None, name="synthetic")
