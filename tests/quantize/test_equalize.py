"""Cross-layer equalization keeps the float function and evens out channel ranges."""
import numpy as np
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.quantize.equalize import equalize_pairs
from qaev.model.session import make_session, run_batches


def _model(*, clip_second: bool = False):
    rng = np.random.default_rng(0)
    wd = (rng.normal(size=(8, 1, 3, 3)) * rng.uniform(0.05, 5.0, size=(8, 1, 1, 1))).astype(np.float32)
    bd = rng.normal(size=8).astype(np.float32)
    wp = rng.normal(size=(6, 8, 1, 1)).astype(np.float32)
    wd2 = rng.normal(size=(6, 1, 3, 3)).astype(np.float32)
    wp2 = rng.normal(size=(4, 6, 1, 1)).astype(np.float32)
    lo, hi = nh.from_array(np.array(0, np.float32), "lo"), nh.from_array(np.array(6, np.float32), "hi")
    nodes = [
        h.make_node("Conv", ["x", "wd", "bd"], ["d"], name="dw", group=8, pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("Relu", ["d"], ["r"], name="relu"),
        h.make_node("Conv", ["r", "wp"], ["p"], name="pw"),
        h.make_node("Conv", ["p", "wd2"], ["d2"], name="dw2", group=6, pads=[1, 1, 1, 1]),
        h.make_node("Clip", ["d2", "lo", "hi"], ["c2"], name="relu6") if clip_second
        else h.make_node("Relu", ["d2"], ["c2"], name="relu2"),
        h.make_node("Conv", ["c2", "wp2"], ["y"], name="pw2"),
    ]
    inits = [nh.from_array(a, n) for a, n in ((wd, "wd"), (bd, "bd"), (wp, "wp"), (wd2, "wd2"), (wp2, "wp2"))]
    graph = h.make_graph(nodes, "dwpw", [h.make_tensor_value_info("x", T.FLOAT, ["N", 8, 10, 10])],
                         [h.make_tensor_value_info("y", T.FLOAT, None)], inits + [lo, hi])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _weights(model):
    return {t.name: nh.to_array(t) for t in model.graph.initializer}


def test_equalization_leaves_float_outputs_unchanged_and_evens_ranges():
    model = _model()
    x = np.random.default_rng(1).normal(size=(4, 8, 10, 10)).astype(np.float32)
    eq, pairs = equalize_pairs(model)
    assert pairs == [("dw", "pw"), ("dw2", "pw2")]
    ref, got = (run_batches(make_session(m), [{"x": x}]) for m in (model, eq))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    before, after = _weights(model), _weights(eq)
    r1 = np.abs(after["wd"]).reshape(8, -1).max(axis=1)
    r2 = np.abs(after["wp"]).transpose(1, 0, 2, 3).reshape(8, -1).max(axis=1)
    np.testing.assert_allclose(r1, r2, rtol=1e-5)
    spread = lambda w: np.ptp(np.log(np.abs(w).reshape(w.shape[0], -1).max(axis=1)))  # noqa: E731
    assert spread(after["wd"]) < spread(before["wd"])


def test_pairs_joined_by_clip_are_left_alone():
    model = _model(clip_second=True)
    eq, pairs = equalize_pairs(model)
    assert pairs == [("dw", "pw")]
    assert np.array_equal(_weights(eq)["wd2"], _weights(model)["wd2"])
