"""The PyTorch interpreter of ONNX graphs matches ONNX Runtime."""
import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.data import digits_model_path, load_digits_split
from qaev.model.session import make_session
from qaev.quantize.learned.torch_graph import TorchGraph, run_onnx


def _ort(proto, feeds):
    return make_session(proto).run(None, feeds)


def _ops_graph() -> onnx.ModelProto:
    """A graph with the operators of a BERT layer and of an EfficientNet block."""
    rng = np.random.default_rng(0)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    inits = [nh.from_array(f(20, 8), "table"), nh.from_array(f(8, 8), "wq"), nh.from_array(f(8), "g"),
             nh.from_array(f(8), "b"), nh.from_array(np.array([0, 0, 2, 4], np.int64), "shape4"),
             nh.from_array(np.array(2.0, np.float32), "two"), nh.from_array(np.array([1], np.int64), "one"),
             nh.from_array(np.array([0, 0, 1, 0, 0, 0, 0, 1], np.int64), "pads"),
             nh.from_array(np.array(0.0, np.float32), "lo"), nh.from_array(np.array(6.0, np.float32), "hi"),
             nh.from_array(f(4, 1, 3, 3), "dw"), nh.from_array(f(3, 4), "fc"), nh.from_array(f(3), "fcb"),
             nh.from_array(np.array([0], np.int64), "zero"), nh.from_array(np.array([2], np.int64), "two_i")]
    nodes = [
        h.make_node("Gather", ["table", "ids"], ["e"]), h.make_node("MatMul", ["e", "wq"], ["q"]),
        h.make_node("LayerNormalization", ["q", "g", "b"], ["ln"], axis=-1, epsilon=1e-5),
        h.make_node("Reshape", ["ln", "shape4"], ["r"]), h.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3]),
        h.make_node("Softmax", ["t"], ["sm"], axis=-1),
        h.make_node("Div", ["sm", "two"], ["d"]), h.make_node("Erf", ["d"], ["er"]),
        h.make_node("Sqrt", ["sm"], ["sq"]),
        h.make_node("Pow", ["er", "two"], ["pw"]), h.make_node("Add", ["pw", "sq"], ["s1"]),
        h.make_node("ReduceMean", ["s1", "one"], ["rm"], keepdims=1), h.make_node("Sub", ["s1", "rm"], ["cen"]),
        h.make_node("Cast", ["mask"], ["maskf"], to=T.FLOAT), h.make_node("Unsqueeze", ["maskf", "one"], ["mu"]),
        h.make_node("Unsqueeze", ["mu", "one"], ["mu2"]),
        h.make_node("Equal", ["mask", "zero"], ["isz"]), h.make_node("Shape", ["cen"], ["shp"]),
        h.make_node("Slice", ["cen", "zero", "two_i", "one"], ["sl"]),
        h.make_node("Concat", ["sl", "sl"], ["cc"], axis=1), h.make_node("Mul", ["cc", "mu2"], ["masked"]),
        h.make_node("Expand", ["two", "shp"], ["ex"]), h.make_node("Sigmoid", ["ex"], ["sg"]),
        h.make_node("Where", ["isz", "maskf", "maskf"], ["wh"]),
        h.make_node("Pad", ["img", "pads"], ["pd"], mode="constant"),
        h.make_node("Conv", ["pd", "dw"], ["cv"], group=4, strides=[2, 2]),
        h.make_node("Clip", ["cv", "lo", "hi"], ["cl"]), h.make_node("GlobalAveragePool", ["cl"], ["gap"]),
        h.make_node("Flatten", ["gap"], ["fl"]), h.make_node("Gemm", ["fl", "fc", "fcb"], ["logits"], transB=1),
    ]
    outs = [h.make_tensor_value_info(n, T.FLOAT, None) for n in ("masked", "sg", "logits", "wh")]
    graph = h.make_graph(nodes, "ops", [h.make_tensor_value_info("ids", T.INT64, [2, 4]),
                                        h.make_tensor_value_info("mask", T.INT64, [2, 4]),
                                        h.make_tensor_value_info("img", T.FLOAT, [2, 4, 9, 9])], outs, inits)
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 21)])


def test_interpreter_matches_onnx_runtime_on_a_graph_of_many_operators():
    proto = _ops_graph()
    rng = np.random.default_rng(1)
    feeds = {"ids": rng.integers(0, 20, (2, 4)).astype(np.int64),
             "mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]], np.int64),
             "img": rng.normal(size=(2, 4, 9, 9)).astype(np.float32) * 3}
    ref = _ort(proto, feeds)
    got = run_onnx(proto, feeds)
    for name, r in zip(("masked", "sg", "logits", "wh"), ref):
        np.testing.assert_allclose(got[name], r, rtol=1e-5, atol=1e-5)


def test_interpreter_matches_onnx_runtime_on_the_digits_model():
    proto = onnx.load(digits_model_path())
    feeds = next(iter(load_digits_split("calib").batches(batch_size=64)))
    ref = _ort(proto, feeds)[0]
    got = next(iter(run_onnx(proto, feeds).values()))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())


def test_a_block_between_two_tensors_runs_only_the_nodes_it_needs():
    proto = onnx.load(digits_model_path())
    nodes = list(proto.graph.node)
    inner = nodes[len(nodes) // 2].input[0]
    graph = TorchGraph(proto, inputs=[inner])
    assert 0 < len(graph.nodes) < len(nodes)
