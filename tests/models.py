"""Tiny ONNX graphs built with onnx.helper for the tests."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def conv_mlp(*, opset: int = 17, seed: int = 0, constant_weight: bool = False, batchnorm: bool = False,
             batch: int | str = "N") -> onnx.ModelProto:
    """Conv -> Relu -> (BN) -> Flatten -> MatMul -> Add -> Relu -> Gemm: two weight layers and a Gemm."""
    rng = np.random.default_rng(seed)
    w1 = (rng.normal(size=(8, 3, 3, 3)) * 0.3).astype(np.float32)
    b1 = (rng.normal(size=8) * 0.1).astype(np.float32)
    w2 = (rng.normal(size=(8 * 6 * 6, 32)) * 0.1).astype(np.float32)
    b2 = (rng.normal(size=32) * 0.1).astype(np.float32)
    w3 = (rng.normal(size=(10, 32)) * 0.3).astype(np.float32)
    b3 = np.zeros(10, np.float32)
    inits = [nh.from_array(b1, "b1"), nh.from_array(w2, "w2"), nh.from_array(b2, "b2"),
             nh.from_array(w3, "w3"), nh.from_array(b3, "b3")]
    nodes = []
    if constant_weight:
        nodes.append(h.make_node("Constant", [], ["w1"], value=nh.from_array(w1, "w1v")))
    else:
        inits.append(nh.from_array(w1, "w1"))
    conv_out = "c1"
    nodes.append(h.make_node("Conv", ["x", "w1", "b1"], [conv_out], name="conv1"))
    if batchnorm:
        for name, value in (("bn_s", rng.uniform(0.5, 1.5, 8)), ("bn_b", rng.normal(size=8) * 0.1),
                            ("bn_m", rng.normal(size=8) * 0.1), ("bn_v", rng.uniform(0.5, 2.0, 8))):
            inits.append(nh.from_array(value.astype(np.float32), name))
        nodes.append(h.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["c1bn"],
                                 name="bn1", epsilon=1e-3))
        conv_out = "c1bn"
    nodes += [
        h.make_node("Relu", [conv_out], ["r1"], name="relu1"),
        h.make_node("Flatten", ["r1"], ["f"], name="flatten"),
        h.make_node("MatMul", ["f", "w2"], ["m2"], name="fc1"),
        h.make_node("Add", ["m2", "b2"], ["a2"], name="fc1_bias"),
        h.make_node("Relu", ["a2"], ["r2"], name="relu2"),
        h.make_node("Gemm", ["r2", "w3", "b3"], ["y"], name="fc2", transB=1),
    ]
    graph = h.make_graph(nodes, "conv_mlp", [h.make_tensor_value_info("x", T.FLOAT, [batch, 3, 8, 8])],
                         [h.make_tensor_value_info("y", T.FLOAT, [batch, 10])], inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 7 if opset <= 13 else 8
    return model


def attention_like(*, seed: int = 0) -> onnx.ModelProto:
    """Gather embedding -> MatMul(W) -> MatMul(q, k^T): a weight MatMul, an activation MatMul, a lookup."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(50, 64)).astype(np.float32)
    wq = (rng.normal(size=(64, 64)) * 0.1).astype(np.float32)
    nodes = [
        h.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
        h.make_node("MatMul", ["e", "wq"], ["q"], name="proj"),
        h.make_node("Transpose", ["e"], ["et"], name="tr", perm=[0, 2, 1]),
        h.make_node("MatMul", ["q", "et"], ["y"], name="scores"),
    ]
    graph = h.make_graph(nodes, "attn", [h.make_tensor_value_info("ids", T.INT64, ["N", "S"])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N", "S", "S"])],
                         [nh.from_array(table, "emb"), nh.from_array(wq, "wq")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


def images(n: int = 32, *, seed: int = 1) -> np.ndarray:
    """Random inputs for :func:`conv_mlp`."""
    return np.random.default_rng(seed).normal(size=(n, 3, 8, 8)).astype(np.float32)
