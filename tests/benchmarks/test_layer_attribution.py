"""benchmarks/layer_attribution.py: the folded copy computes what the quantized model does,
and giving every layer its float parameters back gives the float model's outputs."""
import numpy as np
import onnxruntime as ort

from qaev.config import LayerConfig
from qaev.problems import problem_parts
from qaev.quantize import Quantizer, uniform_config
from tests.paths import load_benchmark

bench = load_benchmark("layer_attribution")


def _run(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_folded_copy_and_restored_layers():
    parts = problem_parts("digits")
    quantizer = Quantizer.calibrated(parts.model, parts.calib)
    config = quantizer.resolve(uniform_config(quantizer.layers, LayerConfig(w_bits=3, act="float")))
    quantized = quantizer.build(config, resolved=True)
    layers = [layer.name for layer in quantizer.layers]
    feed = next(iter(parts.eval.batches(batch_size=16)))
    probe = next(iter(parts.calib.batches(batch_size=1)))
    q_params = bench.layer_parameters(quantized, layers, probe)
    f_params = bench.layer_parameters(parts.model.proto, layers, probe)
    folded = bench.with_constants(quantized, q_params)
    reference, expected = _run(parts.model.proto, feed), _run(quantized, feed)
    np.testing.assert_allclose(_run(folded, feed), expected, rtol=1e-5, atol=1e-5)
    assert not any(n.op_type == "DequantizeLinear" for n in folded.graph.node)  # the weights are constants now
    assert np.abs(expected - reference).max() > 1e-3  # 3-bit weights move the outputs
    restored = bench.with_constants(folded, f_params)
    np.testing.assert_allclose(_run(restored, feed), reference, rtol=1e-5, atol=1e-5)
    one = bench.with_constants(folded, {layers[0]: f_params[layers[0]]})
    assert 0 < np.abs(_run(one, feed) - expected).max() and np.abs(_run(one, feed) - reference).max() > 1e-3


def test_an_emptied_slot_is_dropped():
    parts = problem_parts("digits")
    node = next(n for n in parts.model.proto.graph.node if n.op_type == "Gemm" and len(n.input) == 3)
    out = bench.with_constants(parts.model.proto, {node.name: {2: None}})
    assert list(next(n for n in out.graph.node if n.name == node.name).input) == list(node.input[:2])
    assert node.input[2] not in {t.name for t in out.graph.initializer}
