"""Tests for qaev.data: datasets, the bundled digits case, image and feed folders."""
from __future__ import annotations

import json
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

import qaev.data.imagenet as imagenet_mod
from tests.paths import shared_data
from qaev.data import (
    ArrayDataset,
    digits_model_path,
    load_digits_split,
    load_feed_folder,
    is_image_batch,
    load_imagenet_folder,
    mirrored,
    preprocess_image,
    synthetic_dataset,
)
from qaev.errors import ConfigError, DataError


_shared_data = shared_data


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))


def _dataset(n: int = 10) -> ArrayDataset:
    x = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    ids = np.arange(n, dtype=np.int64)
    return ArrayDataset({"x": x, "ids": ids}, labels=ids * 10, name="toy")


# --- ArrayDataset -----------------------------------------------------------------

def test_dataset_validates_lengths_and_emptiness():
    with pytest.raises(DataError, match="differ in length"):
        ArrayDataset({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})
    with pytest.raises(DataError, match="differ in length"):
        ArrayDataset({"a": np.zeros((3, 2))}, labels=np.zeros(2))
    with pytest.raises(DataError, match="empty"):
        ArrayDataset({"a": np.zeros((0, 2))})
    with pytest.raises(DataError, match="no inputs"):
        ArrayDataset({})


def test_dataset_is_read_only_but_leaves_caller_arrays_writable():
    x = np.zeros((4, 2), np.float32)
    ds = ArrayDataset({"x": x})
    assert not ds.inputs["x"].flags.writeable
    x[0, 0] = 5.0  # the caller's array is still writable; the dataset holds a view
    assert ds.inputs["x"][0, 0] == 5.0
    with pytest.raises(TypeError):
        ds.inputs["y"] = x


def test_batches_in_order_with_short_last_batch():
    ds = _dataset(10)
    batches = list(ds.batches(batch_size=4))
    assert [len(b["x"]) for b in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b["ids"] for b in batches]), np.arange(10))
    assert set(batches[0]) == {"x", "ids"}
    with pytest.raises(DataError):
        next(ds.batches(batch_size=0))


def test_subset_and_head_keep_labels_aligned():
    ds = _dataset(10)
    sub = ds.subset([7, 2, -1])
    np.testing.assert_array_equal(sub.inputs["ids"], [7, 2, 9])
    np.testing.assert_array_equal(sub.labels, [70, 20, 90])
    assert len(ds.head(3)) == 3 and len(ds.head(50)) == 10
    np.testing.assert_array_equal(ds.head(3).inputs["x"], ds.inputs["x"][:3])
    for bad in ([], [10], [0.5]):
        with pytest.raises(DataError):
            ds.subset(bad)
    with pytest.raises(DataError):
        ds.head(0)


def test_split_is_disjoint_seeded_and_checked():
    ds = _dataset(20)
    first, second = ds.split(n_first=6, n_second=9, seed=3)
    a, b = first.inputs["ids"], second.inputs["ids"]
    assert len(a) == 6 and len(b) == 9 and not set(a) & set(b)
    np.testing.assert_array_equal(first.labels, a * 10)
    again, _ = ds.split(n_first=6, n_second=9, seed=3)
    np.testing.assert_array_equal(again.inputs["ids"], a)
    other, _ = ds.split(n_first=6, n_second=9, seed=4)
    assert not np.array_equal(other.inputs["ids"], a)
    _, rest = ds.split(n_first=6, n_second=None, seed=3)
    assert sorted(set(rest.inputs["ids"]) | set(a)) == list(range(20))
    with pytest.raises(DataError):
        ds.split(n_first=15, n_second=6, seed=0)
    with pytest.raises(DataError):
        ds.split(n_first=20, n_second=None, seed=0)


# --- digits -----------------------------------------------------------------------

def test_digits_splits_shapes_and_provenance():
    calib, test = load_digits_split("calib"), load_digits_split("test")
    assert (len(calib), len(test)) == (300, 497)
    for ds in (calib, test):
        x = ds.inputs["input"]
        assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert ds.labels.dtype == np.int64 and set(np.unique(ds.labels)) == set(range(10))
    provenance = json.loads((digits_model_path().parent / "digits.json").read_text())
    sizes = provenance["split"]
    assert (sizes["calib"], sizes["test"]) == (300, 497)
    assert sizes["train"] + sizes["calib"] + sizes["test"] == 1797
    with pytest.raises(ConfigError):
        load_digits_split("train")


def test_bundled_digits_model_reaches_97_percent_in_ort():
    ort = pytest.importorskip("onnxruntime")
    import onnx

    from qaev.evaluation.metrics import top_k

    path = digits_model_path()
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    test = load_digits_split("test")
    logits = np.concatenate([sess.run(["logits"], feed)[0]
                             for feed in test.batches(batch_size=100)])
    acc = top_k(logits, test.labels)
    assert acc >= 97.0
    recorded = json.loads((path.parent / "digits.json").read_text())
    assert acc == pytest.approx(recorded["accuracy_percent"]["test_ort"], abs=0.01)


# --- image folders ----------------------------------------------------------------

def _image_folder(root: pathlib.Path, images: dict[str, Image.Image],
                  classes: list[int] | None = None) -> pathlib.Path:
    (root / "images").mkdir(parents=True)
    rows = ["filename,class_index,wnid"]
    for i, (name, img) in enumerate(images.items()):
        img.save(root / "images" / name)
        rows.append(f"{name},{classes[i] if classes else i},n{i:08d}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def _rgb_noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_imagenet_loader_crops_centre_and_normalises(tmp_path):
    # 48x32: a red band left, a blue band right, green centre square: a centre crop
    # with crop_pct=1 must see only green.
    bands = np.zeros((32, 48, 3), np.uint8)
    bands[:, :8] = (255, 0, 0)
    bands[:, 8:40] = (0, 255, 0)
    bands[:, 40:] = (0, 0, 255)
    gray = Image.fromarray(np.full((20, 30), 200, np.uint8), mode="L")
    folder = _image_folder(tmp_path / "set", {"bands.png": Image.fromarray(bands),
                                              "gray.png": gray}, classes=[5, 7])
    ds = load_imagenet_folder(folder, input_name="img", size=16, crop_pct=1.0,
                              mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    x = ds.inputs["img"]
    assert x.shape == (2, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_array_equal(ds.labels, [5, 7])
    assert ds.name == "set"
    np.testing.assert_allclose(x[0, 0], (0 - 10) / 2)
    np.testing.assert_allclose(x[0, 1], (255 - 20) / 4)
    np.testing.assert_allclose(x[0, 2], (0 - 30) / 5)
    expected_gray = np.array([(200 - 10) / 2, (200 - 20) / 4, (200 - 30) / 5])
    np.testing.assert_allclose(x[1], np.broadcast_to(expected_gray[:, None, None], (3, 16, 16)))
    nhwc = load_imagenet_folder(folder, input_name="img", size=16, crop_pct=1.0,
                                mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0), layout="NHWC")
    np.testing.assert_array_equal(nhwc.inputs["img"], x.transpose(0, 2, 3, 1))


def test_imagenet_loader_matches_reference_crop_on_jpegs(tmp_path):
    images = {f"im{i}.jpg": _rgb_noise(w, h, seed=i)
              for i, (w, h) in enumerate([(40, 30), (30, 41), (64, 64)])}
    folder = _image_folder(tmp_path / "jpegs", images)
    ds = load_imagenet_folder(folder, input_name="x", size=12, crop_pct=0.8, limit=2)
    assert len(ds) == 2
    # 40x30: side round(0.8*30)=24 at (8, 3); 30x41: side 24 at (3, 8).
    for row, box in ((0, (8, 3, 32, 27)), (1, (3, 8, 27, 32))):
        with Image.open(folder / "images" / f"im{row}.jpg") as img:
            ref = img.convert("RGB").crop(box).resize((12, 12), Image.Resampling.BICUBIC)
        expected = (np.asarray(ref, np.float32) - 127.0) / 128.0
        np.testing.assert_allclose(ds.inputs["x"][row], expected.transpose(2, 0, 1),
                                   rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            preprocess_image(folder / "images" / f"im{row}.jpg", size=12, crop_pct=0.8),
            expected, rtol=0, atol=1e-6)


def test_imagenet_loader_caches_and_invalidates(tmp_path, monkeypatch):
    folder = _image_folder(tmp_path / "c", {f"{i}.png": _rgb_noise(20, 20, seed=i)
                                            for i in range(3)})
    first = load_imagenet_folder(folder, input_name="x", size=8).inputs["x"].copy()
    assert len(list((tmp_path / "cache" / "imagenet").glob("*.x.npy"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    with monkeypatch.context() as patch:
        patch.setattr(imagenet_mod, "_crop_resize", no_decoding)
        second = load_imagenet_folder(folder, input_name="x", size=8).inputs["x"]
        np.testing.assert_array_equal(second, first)
        with pytest.raises(AssertionError):  # other options: a different cache entry
            load_imagenet_folder(folder, input_name="x", size=8, resample="bilinear")
    _rgb_noise(20, 20, seed=99).save(folder / "images" / "1.png")
    os.utime(folder / "images" / "1.png", ns=(1, 1))
    third = load_imagenet_folder(folder, input_name="x", size=8).inputs["x"]
    np.testing.assert_array_equal(third[0], first[0])
    assert not np.array_equal(third[1], first[1])
    uncached = load_imagenet_folder(folder, input_name="x", size=8, cache=False)
    np.testing.assert_array_equal(uncached.inputs["x"], third)


def test_imagenet_loader_errors_name_the_path(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        load_imagenet_folder(tmp_path / "nowhere", input_name="x")
    (tmp_path / "nolabels").mkdir()
    with pytest.raises(DataError, match="labels.csv"):
        load_imagenet_folder(tmp_path / "nolabels", input_name="x")
    folder = _image_folder(tmp_path / "missing", {"a.png": _rgb_noise(8, 8, seed=0)})
    with open(folder / "labels.csv", "a") as fh:
        fh.write("b.png,3,n1\n")
    with pytest.raises(DataError, match="b.png"):
        load_imagenet_folder(folder, input_name="x", size=4)
    broken = _image_folder(tmp_path / "broken", {"a.png": _rgb_noise(8, 8, seed=0)})
    (broken / "images" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="a.png"):
        load_imagenet_folder(broken, input_name="x", size=4)
    with pytest.raises(ConfigError):
        load_imagenet_folder(folder, input_name="x", resample="cubic")
    with pytest.raises(ConfigError):
        load_imagenet_folder(folder, input_name="x", crop_pct=1.5)


def test_real_imagenet_samples_load():
    data = _shared_data()
    folder = data / "imagenet-samples" if data else None
    if folder is None or not (folder / "labels.csv").is_file():
        pytest.skip("imagenet-samples not found: set QAEV_DATA to the shared/data folder")
    ds = load_imagenet_folder(folder, input_name="input", limit=8)
    x = ds.inputs["input"]
    assert x.shape == (8, 3, 224, 224) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0  # (x-127)/128 for x in 0..255
    assert ds.labels.dtype == np.int64 and ((0 <= ds.labels) & (ds.labels < 1000)).all()


# --- feed folders and synthetic data ----------------------------------------------

def test_npy_feed_folder_concatenates_in_filename_order(tmp_path):
    np.save(tmp_path / "b.npy", np.full((2, 3), 2.0, np.float32))
    np.save(tmp_path / "a.npy", np.full((3, 3), 1.0, np.float32))
    (tmp_path / "notes.txt").write_text("ignored")
    ds = load_feed_folder(tmp_path, input_names=["x"])
    np.testing.assert_array_equal(ds.inputs["x"][:, 0], [1, 1, 1, 2, 2])
    assert ds.labels is None
    with pytest.raises(DataError, match="single-input"):
        load_feed_folder(tmp_path, input_names=["x", "y"])
    with pytest.raises(DataError, match="float64"):
        load_feed_folder(tmp_path, input_names=["x"], dtypes={"x": np.float64})
    np.save(tmp_path / "c.npy", np.zeros((1, 3), np.float16))
    with pytest.raises(DataError, match="c.npy"):
        load_feed_folder(tmp_path, input_names=["x"])


def test_npy_per_sample_files(tmp_path):
    for i in range(4):
        np.save(tmp_path / f"s{i:02d}.npy", np.full((2, 2), i, np.int64))
    ds = load_feed_folder(tmp_path, input_names=["ids"], per_sample=True)
    assert ds.inputs["ids"].shape == (4, 2, 2)
    np.testing.assert_array_equal(ds.inputs["ids"][:, 0, 0], [0, 1, 2, 3])


def test_npz_feed_folder_with_labels_and_key_checks(tmp_path):
    for i in range(2):
        np.savez(tmp_path / f"{i}.npz", ids=np.full((2, 4), i, np.int64),
                 mask=np.ones((2, 4), np.int64), labels=np.array([i, i + 10]))
    ds = load_feed_folder(tmp_path, input_names=["ids", "mask"])
    assert ds.inputs["ids"].shape == (4, 4)
    np.testing.assert_array_equal(ds.labels, [0, 10, 1, 11])
    with pytest.raises(DataError, match="0.npz"):
        load_feed_folder(tmp_path, input_names=["ids", "mask", "type_ids"])
    np.savez(tmp_path / "2.npz", ids=np.zeros((1, 4), np.int64), mask=np.ones((1, 4)))
    with pytest.raises(DataError, match="2.npz"):
        load_feed_folder(tmp_path, input_names=["ids", "mask"])
    with pytest.raises(DataError, match="not found"):
        load_feed_folder(tmp_path / "absent", input_names=["ids"])


def test_synthetic_dataset_is_seeded_and_typed():
    specs = {"x": ((3, 4), np.float32), "ids": ((5,), np.int64), "flag": ((2,), np.bool_)}
    ds = synthetic_dataset(specs, n=50, seed=7)
    assert ds.inputs["x"].shape == (50, 3, 4) and ds.inputs["x"].dtype == np.float32
    assert ds.inputs["ids"].dtype == np.int64 and ds.inputs["ids"].min() >= 0
    assert ds.inputs["ids"].max() < 10 and ds.inputs["flag"].dtype == np.bool_
    assert abs(float(ds.inputs["x"].mean())) < 0.3 and 0.7 < float(ds.inputs["x"].std()) < 1.3
    same = synthetic_dataset(specs, n=50, seed=7)
    np.testing.assert_array_equal(same.inputs["x"], ds.inputs["x"])
    assert not np.array_equal(synthetic_dataset(specs, n=50, seed=8).inputs["x"], ds.inputs["x"])
    with pytest.raises(DataError):
        synthetic_dataset({"x": ((0, 3), np.float32)}, n=2, seed=0)
    with pytest.raises(DataError):
        synthetic_dataset(specs, n=0, seed=0)


def test_mirrored_appends_each_image_reversed_left_to_right_with_its_label():
    x = np.arange(2 * 1 * 2 * 3, dtype=np.float32).reshape(2, 1, 2, 3)
    both = mirrored(ArrayDataset({"image": x}, labels=np.array([4, 7]), name="pics"))
    got = both.inputs["image"]
    assert got.shape == (4, 1, 2, 3) and (got[:2] == x).all() and (got[2:] == x[..., ::-1]).all()
    assert both.labels.tolist() == [4, 7, 4, 7] and "pics" in both.name
    assert is_image_batch({"image": x}) and not is_image_batch({"image": x[..., :1]})
    with pytest.raises(DataError, match="input 'tokens' has shape \\(3, 5\\)"):
        mirrored(ArrayDataset({"tokens": np.zeros((3, 5), np.int64)}))
    with pytest.raises(DataError, match="input 'state'"):  # 4-D but 64 channels: not an image
        mirrored(ArrayDataset({"state": np.zeros((3, 64, 2, 2), np.float32)}))
