"""ImageNet-style image folders: ``labels.csv`` plus ``images/``, preprocessed once and cached.

Preprocessing follows ``shared/data/imagenet-*/README.md``: take the centre square of
``crop_pct * short side``, resize it to ``size`` x ``size``, convert to RGB float32 and
normalise ``(x - mean) / std`` in pixel units (0..255). With 256 px short sides,
``size=224`` and ``crop_pct=0.875`` this is exactly "resize 256 / centre crop 224".
"""
from __future__ import annotations

import csv
import math
import hashlib
import json
import os
import pathlib
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
from numpy.lib.format import open_memmap
from PIL import Image, UnidentifiedImageError

from qaev.data._cache import cache_dir
from qaev.data.arrays import ArrayDataset
from qaev.errors import ConfigError, DataError
from qaev.files import write_cache

__all__ = ["RESAMPLE", "load_imagenet_folder", "preprocess_image"]

#: Resampling filters by name.
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_CACHE_FORMAT = 1
_WORKERS = max(1, min(os.cpu_count() or 1, 8))


def _crop_resize(path: str | os.PathLike, *, size: int, crop_pct: float,
                 resample: str) -> np.ndarray:
    """Decodes, centre-crops and resizes one image; returns uint8 ``[size, size, 3]``."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc
    width, height = rgb.size
    side = max(1, round(crop_pct * min(width, height)))
    left, top = round((width - side) / 2), round((height - side) / 2)
    rgb = rgb.crop((left, top, left + side, top + side))
    return np.asarray(rgb.resize((size, size), RESAMPLE[resample]))


def preprocess_image(path: str | os.PathLike, *, size: int = 224, crop_pct: float = 0.875,
                     mean: Sequence[float] = (127.0, 127.0, 127.0),
                     std: Sequence[float] = (128.0, 128.0, 128.0),
                     resample: str = "bicubic") -> np.ndarray:
    """Decodes and preprocesses one image into a float32 ``[size, size, 3]`` array.

    The crop side is ``round(crop_pct * min(w, h))`` pixels, placed at
    ``round((w - side) / 2), round((h - side) / 2)``; only pixels inside the crop feed
    the resize. The result is ``(rgb - mean) / std`` with rgb in 0..255.

    Raises:
        DataError: The file is missing or is not a readable image.
        ConfigError: An option is out of range.
    """
    _check_options(size, crop_pct, mean, std, resample, None, "NHWC")
    pixels = _crop_resize(path, size=size, crop_pct=crop_pct, resample=resample)
    return (pixels - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def _read_labels(folder: pathlib.Path, limit: int | None) -> tuple[list[str], np.ndarray]:
    labels_csv = folder / "labels.csv"
    if not labels_csv.is_file():
        raise DataError(f"{labels_csv}: labels file not found")
    try:
        return _parse_labels(labels_csv, limit)
    except UnicodeDecodeError:
        raise DataError(f"{labels_csv}: not UTF-8 text") from None
    except csv.Error as exc:
        raise DataError(f"{labels_csv}: not a valid CSV file ({exc})") from None


def _parse_labels(labels_csv: pathlib.Path, limit: int | None) -> tuple[list[str], np.ndarray]:
    """Rows of ``labels.csv``; a byte-order mark, CRLF line ends and spaces around the
    header's names are fine (spreadsheet exports)."""
    names: list[str] = []
    classes: list[int] = []
    with labels_csv.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = [f.strip() for f in reader.fieldnames or ()]
        missing = {"filename", "class_index"} - set(reader.fieldnames)
        if missing:
            raise DataError(f"{labels_csv}: header lacks column(s) {sorted(missing)}")
        for row in reader:
            if limit is not None and len(names) >= limit:
                break
            name = (row["filename"] or "").strip()
            if not name or pathlib.PurePath(name).is_absolute() or ".." in pathlib.PurePath(name).parts:
                raise DataError(f"{labels_csv}:{reader.line_num}: bad filename {name!r}")
            try:
                classes.append(int(row["class_index"]))
            except (TypeError, ValueError) as exc:
                raise DataError(f"{labels_csv}:{reader.line_num}: bad class_index "
                                f"{row['class_index']!r}") from exc
            if classes[-1] < 0:
                raise DataError(f"{labels_csv}:{reader.line_num}: class_index {classes[-1]} is negative")
            names.append(name)
    if not names:
        raise DataError(f"{labels_csv}: no samples listed")
    return names, np.asarray(classes, dtype=np.int64)


def _check_options(size, crop_pct, mean, std, resample, limit, layout) -> None:
    if not 1 <= size <= 8192:
        raise ConfigError(f"size must be in 1..8192, got {size}")
    if not 0.0 < crop_pct <= 1.0:
        raise ConfigError(f"crop_pct must be in (0, 1], got {crop_pct}")
    if (len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std)
            or not all(math.isfinite(v) for v in (*mean, *std))):
        raise ConfigError(f"mean and std need 3 finite values each, std non-zero; got {mean}, {std}")
    if resample not in RESAMPLE:
        raise ConfigError(f"unknown resample {resample!r}; expected one of {sorted(RESAMPLE)}")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be >= 1 or None, got {limit}")
    if layout not in ("NCHW", "NHWC"):
        raise ConfigError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")


def _cache_key(folder: pathlib.Path, paths: list[pathlib.Path], labels: np.ndarray,
               params: dict) -> str:
    files = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        files.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    record = {
        "format": _CACHE_FORMAT, "folder": str(folder), "params": params,
        "pillow": Image.__version__, "files": files.hexdigest(),
        "labels": hashlib.sha256(labels.tobytes()).hexdigest(),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:32]


def _cache_stem(folder: pathlib.Path, paths: list[pathlib.Path], labels: np.ndarray,
                params: dict) -> pathlib.Path | None:
    """Returns the cache path stem for this load, or None when no cache folder is usable."""
    try:
        root = cache_dir("imagenet")
    except OSError as exc:
        warnings.warn(f"qaev: image cache disabled ({exc})", stacklevel=3)
        return None
    return root / _cache_key(folder, paths, labels, params)


def _load_cached(path: pathlib.Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Maps a cached array read-only; None when absent, damaged or of another shape."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if array.shape != shape or array.dtype != np.float32:
        return None
    return array


def _fill(out: np.ndarray, paths: list[pathlib.Path], *, size: int, crop_pct: float,
          mean: Sequence[float], std: Sequence[float], resample: str, layout: str) -> None:
    """Preprocesses ``paths`` into ``out`` (one row per image) on a thread pool."""
    channel_shape = (3, 1, 1) if layout == "NCHW" else (3,)
    mean_arr = np.asarray(mean, np.float32).reshape(channel_shape)
    std_arr = np.asarray(std, np.float32).reshape(channel_shape)

    def work(index: int) -> None:
        pixels = _crop_resize(paths[index], size=size, crop_pct=crop_pct, resample=resample)
        target = out[index]
        np.subtract(pixels.transpose(2, 0, 1) if layout == "NCHW" else pixels, mean_arr,
                    out=target)
        np.divide(target, std_arr, out=target)

    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for _ in pool.map(work, range(len(paths))):
            pass


def load_imagenet_folder(path: str | os.PathLike, *, input_name: str, size: int = 224,
                         crop_pct: float = 0.875,
                         mean: Sequence[float] = (127.0, 127.0, 127.0),
                         std: Sequence[float] = (128.0, 128.0, 128.0),
                         resample: str = "bicubic", limit: int | None = None,
                         layout: str = "NCHW", cache: bool = True) -> ArrayDataset:
    """Loads and preprocesses an image folder with ``labels.csv`` and ``images/``.

    ``labels.csv`` needs a header with at least ``filename,class_index``; rows are used in
    file order. Images are decoded on a thread pool. The preprocessed array is cached as
    ``.npy`` under ``$QAEV_CACHE/imagenet`` (default ``~/.cache/qaev/imagenet``), keyed by
    the folder, the options, the Pillow version and each listed file's size and mtime, so
    a second load maps the cached file read-only instead of decoding again.

    Args:
        path: The folder.
        input_name: Model input the images feed.
        size: Output height and width in pixels.
        crop_pct: Side of the centre square crop as a fraction of the short side.
        mean: Per-channel (R, G, B) mean subtracted, in pixel units.
        std: Per-channel (R, G, B) divisor, in pixel units.
        resample: Pillow filter name, one of :data:`RESAMPLE`.
        limit: Use only the first ``limit`` rows of ``labels.csv``.
        layout: ``"NCHW"`` or ``"NHWC"``.
        cache: Read and write the on-disk cache.

    Returns:
        Dataset ``{input_name: float32 [N,3,size,size]}`` (or NHWC) with int64 labels,
        named after the folder.

    Raises:
        DataError: The folder, ``labels.csv`` or an image is missing or unreadable.
        ConfigError: An option is out of range.
    """
    _check_options(size, crop_pct, mean, std, resample, limit, layout)
    folder = pathlib.Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    names, labels = _read_labels(folder, limit)
    paths = [folder / "images" / name for name in names]
    for image_path in paths:
        if not image_path.is_file():
            raise DataError(f"{image_path}: image listed in labels.csv not found")
    params = {"size": size, "crop_pct": float(crop_pct), "mean": [float(m) for m in mean],
              "std": [float(s) for s in std], "resample": resample, "layout": layout,
              "names": hashlib.sha256("\n".join(names).encode()).hexdigest()}
    shape = (len(paths), 3, size, size) if layout == "NCHW" else (len(paths), size, size, 3)

    def fill(out: np.ndarray) -> None:
        _fill(out, paths, size=size, crop_pct=crop_pct, mean=mean, std=std, resample=resample, layout=layout)

    store = _cache_stem(folder, paths, labels, params) if cache else None
    x = _cached_array(store, shape, fill, {"folder": str(folder), "n": len(names), **params})
    return ArrayDataset({input_name: x}, labels=labels, name=folder.name)


def _cached_array(store: pathlib.Path | None, shape: tuple, fill, record: dict) -> np.ndarray:
    """The array ``fill`` writes, read from (or written to) the cache file ``store`` when
    given: filled in place in a memory map, renamed into place whole, then mapped read-only."""
    if store is None:
        out = np.empty(shape, dtype=np.float32)
        fill(out)
        return out
    final = store.with_suffix(".x.npy")
    cached = _load_cached(final, shape)
    if cached is not None:
        return cached
    partial = store.with_name(f"{store.name}.{os.getpid()}.partial.npy")
    try:
        # Fill the cache file in place: no second copy in memory, no separate write.
        out = open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
    except OSError as exc:
        warnings.warn(f"qaev: image cache not written ({exc})", stacklevel=3)
        return _cached_array(None, shape, fill, record)
    try:
        fill(out)
        out.flush()
        del out  # close the map before renaming the file
        os.replace(partial, final)
        write_cache(store.with_suffix(".json"), (json.dumps(record, indent=1) + "\n").encode())
    finally:
        if partial.exists():
            partial.unlink()
    return np.load(final, mmap_mode="r", allow_pickle=False)
