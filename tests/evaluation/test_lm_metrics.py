"""Language-model metrics: next-token NLL, perplexity and bits per byte on known distributions,
their relative drops, and the evaluator's per-batch reduction on a tiny bigram model."""
from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.data.text import TextWindows
from qaev.errors import DataError
from qaev.evaluation import metrics
from qaev.evaluation.evaluator import METRICS, Evaluator
from qaev.model.graph import load_model

V = 8


def test_uniform_logits_give_the_vocabulary_size():
    ids = np.random.default_rng(0).integers(0, V, (3, 10))
    nll = metrics.next_token_nll(np.zeros((3, 10, V), np.float32), ids)
    assert nll.shape == (3, 9) and nll.dtype == np.float32
    np.testing.assert_allclose(nll, math.log(V), rtol=1e-6)
    assert metrics.perplexity(nll) == pytest.approx(V, rel=1e-6)
    # each token one byte: bits per byte is log2(V) bits per token
    assert metrics.bits_per_byte(nll, np.ones_like(nll)) == pytest.approx(math.log2(V), rel=1e-6)


def test_a_known_distribution_gives_its_cross_entropy():
    p = np.array([0.5, 0.25, 0.125, 0.125])
    targets = np.array([0, 0, 0, 0, 1, 1, 2, 3])  # the empirical distribution is p itself
    ids = np.concatenate([[0], targets])[None]
    logits = np.broadcast_to(np.log(p) + 3.0, (1, len(ids[0]), 4)).astype(np.float32)  # shift: softmax unchanged
    nll = metrics.next_token_nll(logits, ids)
    entropy = -(p * np.log(p)).sum()  # 1.75 bits
    assert metrics.perplexity(nll) == pytest.approx(math.exp(entropy), rel=1e-6)
    assert metrics.perplexity(nll) == pytest.approx(2 ** 1.75, rel=1e-6)
    sizes = np.full_like(nll, 2.0)  # two bytes a token: half the bits per byte
    assert metrics.bits_per_byte(nll, sizes) == pytest.approx(1.75 / 2, rel=1e-6)


def test_nan_logits_and_bad_shapes():
    logits = np.zeros((1, 4, V), np.float32)
    logits[0, 1, 3] = np.nan
    assert np.isnan(metrics.next_token_nll(logits, np.zeros((1, 4), np.int64))[0, 1])
    with pytest.raises(DataError):
        metrics.next_token_nll(np.zeros((2, 4, V)), np.zeros((2, 5), np.int64))
    with pytest.raises(DataError):
        metrics.next_token_nll(np.zeros((2, 1, V)), np.zeros((2, 1), np.int64))
    with pytest.raises(DataError):
        metrics.bits_per_byte(np.ones(3), np.zeros(3))


def test_relative_drops_are_percent_of_float_and_positive_is_worse():
    ppl, bpb = METRICS["perplexity"], METRICS["bits_per_byte"]
    assert not ppl.higher_is_better and ppl.relative and ppl.reduce is not None
    assert ppl.drop(20.0, 20.6) == pytest.approx(3.0)
    assert ppl.drop(20.0, 19.0) == pytest.approx(-5.0)
    assert bpb.drop(1.2, 1.224) == pytest.approx(2.0)
    assert METRICS["top1"].drop(80.0, 78.5) == pytest.approx(1.5)  # absolute points, unchanged


def _bigram(table: np.ndarray):
    """input_ids -> one-hot rows of ``table`` as logits; mask and positions declared, unused."""
    n = table.shape[0]
    nodes = [h.make_node("Gather", ["eye", "input_ids"], ["onehot"], name="embed"),
             h.make_node("MatMul", ["onehot", "table"], ["logits"], name="head")]
    inputs = [h.make_tensor_value_info(name, T.INT64, ["b", "s"])
              for name in ("input_ids", "attention_mask", "position_ids")]
    graph = h.make_graph(nodes, "bigram", inputs, [h.make_tensor_value_info("logits", T.FLOAT, ["b", "s", n])],
                         [nh.from_array(np.eye(n, dtype=np.float32), "eye"),
                          nh.from_array(table.astype(np.float32), "table")])
    return load_model(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))


def test_the_evaluator_reduces_each_batch_and_scores_the_bigram_distribution():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(V, V)) * 2.0
    tokens = rng.integers(0, V, (13, 6))
    windows = TextWindows(tokens, np.full((13, 5), 3), name="bigram")
    evaluator = Evaluator(_bigram(table), windows, metric="perplexity", batch_size=4)
    log_p = table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    expected = math.exp(-np.mean(log_p[tokens[:, :-1], tokens[:, 1:]]))
    assert evaluator.reference.shape == (13, 5)  # per-token NLL rows, not [13, 6, V] logits
    assert evaluator.float_value == pytest.approx(expected, rel=1e-5)
    bpb = evaluator.companions(evaluator.reference)["bits_per_byte"]
    assert bpb == pytest.approx(math.log2(expected) / 3, rel=1e-5)
    worse = evaluator.reference * 1.1
    gap, stderr = evaluator.paired_gap(evaluator.reference, worse, n_boot=20)
    drop = evaluator.drop(evaluator.score(worse))
    assert drop > 0 and gap == pytest.approx(drop, rel=1e-9) and stderr > 0
