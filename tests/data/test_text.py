"""Text windows for language models (qaev.data.text), with the shipped byte-level tokenizer."""
from __future__ import annotations

import numpy as np
import pytest

from qaev.data.text import TextWindows, empty_cache_inputs, load_text_windows, read_texts, token_byte_lengths
from qaev.errors import DataError

tokenizers = pytest.importorskip("tokenizers")

from qaev.problems.llama import llama_tokenizer_path  # noqa: E402 - after the skip

TEXT = ("Functions are defined with ``def``.  The ``return`` statement returns a value.\n\n"
        "Ünïcode: naïve café, 東京 — and a long word: antidisestablishmentarianism.\n") * 6


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "b.txt").write_text(TEXT[:300], encoding="utf-8")
    (texts / "a.txt").write_text(TEXT, encoding="utf-8")
    (texts / "notes.md").write_text("not read", encoding="utf-8")
    return texts


def _ids(text: str) -> np.ndarray:
    tok = tokenizers.Tokenizer.from_file(str(llama_tokenizer_path()))
    return np.asarray(tok.encode(text).ids)


def test_windows_cut_the_joined_token_stream_and_label_the_bytes_of_predicted_tokens(folder):
    windows = load_text_windows(folder, tokenizer_path=llama_tokenizer_path(), length=16)
    stream = np.concatenate([_ids(TEXT), _ids(TEXT[:300])])  # files in name order
    n = len(stream) // 16
    assert len(windows) == n and windows.length == 16 and windows.name == "texts"
    np.testing.assert_array_equal(windows.tokens, stream[:n * 16].reshape(n, 16))
    lengths = token_byte_lengths(tokenizers.Tokenizer.from_file(str(llama_tokenizer_path())))
    assert lengths[_ids(TEXT)].sum() == len(TEXT.encode("utf-8"))  # byte-level: tokens cover every byte once
    np.testing.assert_array_equal(windows.labels, lengths[windows.tokens[:, 1:]])
    assert windows.labels.shape == (n, 15)
    again = load_text_windows(folder, tokenizer_path=llama_tokenizer_path(), length=16)  # from the cache
    np.testing.assert_array_equal(again.tokens, windows.tokens)


def test_batches_feed_a_decoder_with_empty_cache_inputs():
    tokens = np.arange(5 * 4).reshape(5, 4)
    windows = TextWindows(tokens, np.ones((5, 3)), empty_inputs={"past_key_values.0.key": (2, 0, 8)}, name="t")
    batches = list(windows.batches(batch_size=2))
    assert [b["input_ids"].shape[0] for b in batches] == [2, 2, 1]
    first = batches[0]
    assert set(first) == set(windows.input_names)
    np.testing.assert_array_equal(first["position_ids"], [[0, 1, 2, 3]] * 2)
    np.testing.assert_array_equal(first["attention_mask"], np.ones((2, 4)))
    assert first["past_key_values.0.key"].shape == (2, 2, 0, 8)
    assert first["input_ids"].dtype == np.int64
    part = windows.subset([4, 1])
    np.testing.assert_array_equal(part.tokens, tokens[[4, 1]])
    assert part.empty_inputs == windows.empty_inputs
    calib, rest = windows.split(n_first=2, n_second=None, seed=3)
    assert not {tuple(r) for r in calib.tokens} & {tuple(r) for r in rest.tokens}  # disjoint windows
    assert len(calib) + len(rest) == 5


def test_bad_texts_and_shapes_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="length >= 2"):
        TextWindows(np.zeros((3, 1), np.int64), np.zeros((3, 0)))
    with pytest.raises(DataError, match="do not match"):
        TextWindows(np.zeros((3, 4), np.int64), np.zeros((3, 4)))
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_texts(tmp_path / "latin1.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt"):
        read_texts(tmp_path / "empty")
    (tmp_path / "short.txt").write_text("a few words", encoding="utf-8")
    with pytest.raises(DataError, match="fewer than one window"):
        load_text_windows(tmp_path / "short.txt", tokenizer_path=llama_tokenizer_path(), length=64)


def test_a_tokenizer_that_is_not_byte_level_is_refused(tmp_path, monkeypatch):
    from tokenizers import Tokenizer, models, pre_tokenizers

    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()  # drops the spaces: tokens miss bytes
    words.save(str(tmp_path / "words.json"))
    (tmp_path / "t.txt").write_text("a b a b a b a b", encoding="utf-8")
    with pytest.raises(DataError, match="byte-level"):
        load_text_windows(tmp_path / "t.txt", tokenizer_path=tmp_path / "words.json", length=2)


def test_empty_cache_inputs_read_the_past_shapes():
    from onnx import TensorProto, helper

    inputs = {"input_ids": helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "s"]),
              "past_key_values.0.key": helper.make_tensor_value_info("past_key_values.0.key", TensorProto.FLOAT,
                                                                     ["b", 2, "p", 64])}
    assert empty_cache_inputs(inputs) == {"past_key_values.0.key": (2, 0, 64)}
    inputs["past_key_values.0.value"] = helper.make_tensor_value_info("past_key_values.0.value", TensorProto.FLOAT,
                                                                      ["b", "h", "p", 64])
    with pytest.raises(DataError, match="fixed heads"):
        empty_cache_inputs(inputs)
