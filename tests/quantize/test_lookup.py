"""Quantized lookup tables decoded whole by operators folded at session load: exact values, packed storage,
one Gather a run, fallback."""
import numpy as np
import onnx
import pytest
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.config import ActMode, Granularity, LayerConfig, ScaleRule
from qaev.data import ArrayDataset
from qaev.model.graph import load_model
from qaev.model.layers import LayerInfo
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.lookup import decode_table, gathered_lookup, gathers_first, pack_bits
from qaev.quantize.weights import quantize_weight
from qaev.model.session import make_session
from tests.models import attention_like

_T = onnx.TensorProto


def _lookup_model(width: int) -> onnx.ModelProto:
    table = np.random.default_rng(3).standard_t(3, size=(40, width)).astype(np.float32)
    graph = h.make_graph([h.make_node("Gather", ["emb", "ids"], ["e"], name="embed")], "lookup",
                         [h.make_tensor_value_info("ids", _T.INT64, ["N", "S"])],
                         [h.make_tensor_value_info("e", _T.FLOAT, ["N", "S", width])], [nh.from_array(table, "emb")])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8, 16])
@pytest.mark.parametrize("granularity", [Granularity.PER_TENSOR, Granularity.PER_CHANNEL, Granularity.BLOCK32])
@pytest.mark.parametrize("symmetric", [True, False])
def test_gathered_rows_equal_the_dequantized_table_bit_for_bit(bits, granularity, symmetric):
    width = 64 if granularity.block_size else 63  # 63: the packed rows end in a partial byte
    proto = _lookup_model(width)
    table = nh.to_array(proto.graph.initializer[0])
    qw = quantize_weight(table, bits=bits, granularity=granularity, symmetric=symmetric, scale_rule=ScaleRule.FLOAT,
                         channel_axis=0, reduce_axis=1)
    ed = GraphEditor(proto)
    gathered_lookup(ed, ed.node("embed"), qw, name="embed.w")
    model = ed.finish()
    assert "DequantizeLinear" not in {n.op_type for n in model.graph.node}
    ids = np.random.default_rng(0).integers(0, 40, (3, 7)).astype(np.int64)
    got = make_session(model).run(None, {"ids": ids})[0]
    np.testing.assert_array_equal(got, qw.dequantize()[ids])


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_the_table_is_decoded_once_at_session_load_and_each_run_is_one_gather(tmp_path, bits):
    import onnxruntime as ort

    proto = _lookup_model(64)
    qw = quantize_weight(nh.to_array(proto.graph.initializer[0]), bits=bits, granularity=Granularity.PER_CHANNEL,
                         symmetric=False, scale_rule=ScaleRule.FLOAT, channel_axis=0, reduce_axis=1)
    ed = GraphEditor(proto)
    gathered_lookup(ed, ed.node("embed"), qw, name="embed.w")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(ed.finish().SerializeToString(), options, providers=["CPUExecutionProvider"])
    assert [n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node] == ["Gather"]


def test_packed_bytes_decode_to_their_values():
    values = np.array([[-2, -1, 0, 1, 1]], np.int16)
    packed = pack_bits(values + 2, 2)
    assert packed.shape == (1, 2)
    decoded = decode_table(2)[packed.astype(np.int64)].reshape(1, -1)[:, :5]
    np.testing.assert_array_equal(decoded, values)


def test_lookup_blocks_must_split_the_rows():
    layer = LayerInfo("embed", "Gather", "emb", (40, 48), 0, 1, (), "e", 0, 40 * 48)
    assert gathers_first(layer, None) and gathers_first(layer, 16)
    assert not gathers_first(layer, 32)


def test_a_table_whose_rows_do_not_split_into_blocks_keeps_the_whole_table_form():
    ids = {"ids": np.arange(12).reshape(2, 6)}
    q = Quantizer.calibrated(load_model(attention_like()), ArrayDataset(inputs=ids, name="ids"), persist=False)
    cfg = uniform_config(q.layers, LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity.BLOCK128))
    built, exported = q.build(cfg), export_model(q, cfg)  # rows of 64: not whole blocks of 128
    assert "embed.w.CastQ" in {n.name for n in built.graph.node}  # the whole table, folded when the session loads
    np.testing.assert_array_equal(make_session(exported).run(None, ids)[0], make_session(built).run(None, ids)[0])


def test_the_built_and_exported_models_decode_the_table_without_dequantizelinear():
    model = load_model(attention_like())
    ids = np.random.default_rng(0).integers(0, 50, (16, 6)).astype(np.int64)
    q = Quantizer.calibrated(model, ArrayDataset(inputs={"ids": ids}, name="ids"), persist=False)
    cfg = uniform_config(q.layers, LayerConfig(w_bits=8, act=ActMode.DYNAMIC))
    built = q.build(cfg)
    table_dq = [n for n in built.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("embed")]
    assert not table_dq
    inits = {i.name: i for i in export_model(q, cfg).graph.initializer}
    assert inits["embed.w.q"].data_type == _T.INT8 and list(inits["embed.w.q"].dims) == [50, 64]
