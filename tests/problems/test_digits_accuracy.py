"""Accuracy on the bundled digits problem: qaev vs ONNX Runtime's own quantizer, and bit ordering."""
import onnx
import pytest
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

from qaev.config import ActMode, Granularity, LayerConfig
from qaev.data import digits_model_path, load_digits_split
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, uniform_config


@pytest.fixture(scope="module")
def setup():
    model = load_model(digits_model_path())
    calib, test = load_digits_split("calib"), load_digits_split("test")
    return model, calib, Evaluator(model, test, metric="top1"), Quantizer.calibrated(model, calib, persist=False)


class _Reader(CalibrationDataReader):
    def __init__(self, dataset):
        self._it = iter(dataset.batches(batch_size=64))

    def get_next(self):
        return next(self._it, None)


def test_w8a8_matches_onnxruntime_quantize_static(setup, tmp_path):
    model, calib, evaluator, quantizer = setup
    ours = evaluator.measure(quantizer.build(
        uniform_config(quantizer.layers, LayerConfig(w_bits=8, granularity=Granularity.PER_TENSOR)))).value
    out = tmp_path / "ort_w8a8.onnx"
    quantize_static(str(digits_model_path()), str(out), _Reader(calib), quant_format=QuantFormat.QDQ)
    theirs = evaluator.measure(onnx.load(str(out))).value
    assert abs(ours - theirs) <= 0.3, (ours, theirs)
    assert evaluator.float_value - ours < 1.0


def test_weight_bits_order_accuracy(setup):
    model, calib, evaluator, quantizer = setup
    acc = {b: evaluator.measure(quantizer.build(uniform_config(quantizer.layers,
                                                               LayerConfig(w_bits=b, act=ActMode.FLOAT)))).value
           for b in (8, 4, 2)}
    assert acc[8] >= acc[4] >= acc[2]
    assert acc[8] > acc[2] + 5  # 2-bit everywhere must visibly hurt, else the test shows nothing
