"""``labels.csv`` as spreadsheets and Windows tools write it: a UTF-8 byte-order mark,
CRLF line ends, spaces around the header's names."""
import numpy as np
import pytest
from PIL import Image

from qaev.data import load_imagenet_folder
from qaev.errors import DataError


def _folder(root, text: bytes):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (10, 10, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
    (root / "labels.csv").write_bytes(text)
    return root


_ROWS = [("filename", "class_index"), ("0.png", "4"), ("1.png", "7"), ("2.png", "1")]


@pytest.mark.parametrize("bom, end, header_space", [(True, "\n", False), (False, "\r\n", False),
                                                     (True, "\r\n", True)])
def test_labels_csv_as_spreadsheets_write_it(tmp_path, monkeypatch, bom, end, header_space):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    rows = [", ".join(r) if header_space and i == 0 else ",".join(r) for i, r in enumerate(_ROWS)]
    text = end.join(rows) + end
    folder = _folder(tmp_path / "d", (b"\xef\xbb\xbf" if bom else b"") + text.encode())
    ds = load_imagenet_folder(folder, input_name="x", size=8)
    assert ds.labels.tolist() == [4, 7, 1]


def test_labels_csv_in_another_encoding_or_with_negative_classes_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    folder = _folder(tmp_path / "latin", "filename,class_index\n0.png,1\n1.png,2\n2.png,3 \xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="labels.csv"):
        load_imagenet_folder(folder, input_name="x", size=8)
    folder = _folder(tmp_path / "neg", b"filename,class_index\n0.png,1\n1.png,-2\n2.png,3\n")
    with pytest.raises(DataError, match="negative"):
        load_imagenet_folder(folder, input_name="x", size=8)
