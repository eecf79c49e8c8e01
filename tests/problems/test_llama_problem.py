"""The llama-pydocs problem on the shared pydocs text: splits, float references, the
decoding step host latency times, and a 4-bit model measured alike evaluated and exported.

Slow: exports the decoder once (torch) into a private cache; skipped without torch,
onnxscript or the data."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from tests.paths import shared_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    for module in ("torch", "onnxscript", "tokenizers"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"package {module!r} is not installed")
    root = shared_data()
    if root is None or not (root / "pydocs").is_dir():
        pytest.skip("data folder 'pydocs' not found (set QAEV_DATA to the shared/data folder)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QAEV_CACHE", str(tmp_path_factory.mktemp("cache")))
        from qaev.problems import problem_parts

        yield problem_parts("llama-pydocs")


def _rows(windows) -> set:
    return {row.tobytes() for row in windows.tokens}


def test_splits_are_disjoint_windows_of_the_three_files(parts):
    assert parts.metric == "perplexity"
    assert (len(parts.calib), len(parts.eval), len(parts.validation), len(parts.test)) == (128, 128, 289, 366)
    assert parts.full is parts.test and parts.calib.length == 256
    sets = [_rows(w) for w in (parts.calib, parts.eval, parts.validation, parts.test)]
    assert all(not (a & b) for i, a in enumerate(sets) for b in sets[i + 1:])
    assert parts.eval.empty_inputs["past_key_values.3.value"] == (2, 0, 64)
    feed = parts.host_feed  # one decoded token after a 128-token prompt, batch 1
    assert feed["input_ids"].shape == (1, 1) and feed["attention_mask"].shape == (1, 129)
    assert feed["past_key_values.0.key"].shape == (1, 2, 128, 64) and int(feed["position_ids"][0, 0]) == 128


def test_float_references_match_the_training_record(parts):
    from qaev.evaluation.evaluator import Evaluator

    evaluator = Evaluator(parts.model, parts.test, metric="perplexity")
    # config.json: test 26.49 / 1.3451 scoring every token but the first; windows skip each window's first
    assert evaluator.float_value == pytest.approx(26.50, abs=0.02)
    assert evaluator.companions(evaluator.reference)["bits_per_byte"] == pytest.approx(1.3461, abs=0.001)


@pytest.mark.parametrize("level", [0, 4])
def test_a_4bit_model_measures_the_same_evaluated_and_exported(parts, level):
    from dataclasses import replace

    from qaev.config import ActMode, Granularity, LayerConfig
    from qaev.evaluation.evaluator import Evaluator
    from qaev.quantize import Quantizer, export_model, uniform_config

    quantizer = Quantizer(parts.model)
    weighted = [layer for layer in quantizer.layers if layer.has_weight]
    config = replace(uniform_config(weighted, LayerConfig(w_bits=4, act=ActMode.FLOAT,
                                                          granularity=Granularity("block32"))), nbits_accuracy=level)
    exported = export_model(quantizer, config)
    nodes = [n for n in exported.graph.node if n.op_type == "MatMulNBits"]
    # level 4: the 28 projections and the LM head as MatMulNBits; level 0: weights folded to float at load
    assert len(nodes) == (29 if level else 0)
    levels = {a.i for n in nodes for a in n.attribute if a.name == "accuracy_level"}
    assert levels == ({4} if level else set())
    evaluator = Evaluator(parts.model, parts.test.head(16), metric="perplexity")
    evaluated = evaluator.measure(quantizer.build(config)).value
    shipped = evaluator.measure(exported.SerializeToString()).value
    assert shipped == pytest.approx(evaluated, rel=2e-4)
    assert 0.0 < evaluator.drop(shipped) < 3.0  # round-to-nearest 4-bit: well under 3 % of float
    assert np.isfinite(shipped)


def test_any_text_file_is_split_into_calibration_and_evaluation_windows(parts, tmp_path):
    from qaev.problems import problem_parts

    text = (shared_data() / "pydocs" / "valid.txt").read_text(encoding="utf-8")[:60_000]
    (tmp_path / "other.txt").write_text(text, encoding="utf-8")
    other = problem_parts("llama-pydocs", data=str(tmp_path / "other.txt"), calib=10)
    assert other.test is None and len(other.calib) == 10
    assert len(other.calib) + len(other.eval) == len(other.full)
    assert not (_rows(other.calib) & _rows(other.eval))
