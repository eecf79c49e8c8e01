"""Label-free (fidelity) runs that mean something: generated inputs are announced, a float
model whose predictions do not vary is refused, and outputs that are not [N, classes]
(sequences, several heads) get a metric that works."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

from qaev.cli.main import main
from qaev.config import ActMode, LayerConfig, QuantConfig
from qaev.data import ArrayDataset
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.quantize import Quantizer
from tests.models import conv_mlp, images


def _save(model, path):
    onnx.save(model, str(path))
    return path


def _biased(share_of_bias: float):
    """conv_mlp whose class 3 gets a bias that wins on (almost) every noise input."""
    model = conv_mlp()
    b3 = next(i for i in model.graph.initializer if i.name == "b3")
    bias = np.zeros(10, np.float32)
    bias[3] = share_of_bias
    b3.CopyFrom(nh.from_array(bias, "b3"))
    return model


def test_a_float_model_that_gives_every_input_one_class_is_refused(tmp_path, capsys):
    """An ImageNet CNN gives every noise image one class: agreement would score every
    candidate 0 or 100."""
    path = _save(_biased(1000.0), tmp_path / "m.onnx")
    code = main(["quantize", str(path), "--task", "fidelity", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and "every one of" in err and "class 3" in err and "generated" in err, err
    code = main(["search", str(path), "--pop", "4", "--generations", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "class 3" in err, err


def test_lopsided_predictions_are_warned_about():
    model = load_model(_biased(0.0))
    logits = np.zeros((100, 10), np.float32)
    logits[:95, 3] = 1.0
    logits[95:, 5] = 1.0
    evaluator = Evaluator(model, ArrayDataset({"x": images(100)}), metric="agreement")
    evaluator.__dict__["_reference_blocks"] = [logits]  # the float model's outputs, as if measured
    with pytest.warns(UserWarning, match="class 3 for 95%"):
        evaluator.reference  # noqa: B018


def test_generated_inputs_are_announced(tmp_path, capsys):
    path = _save(conv_mlp(), tmp_path / "m.onnx")
    code = main(["quantize", str(path), "--task", "fidelity", "-o", str(tmp_path / "q.onnx")])
    err = capsys.readouterr().err
    assert code == 0 and "no --data" in err and "generated" in err, err


def _sequence_output():
    """conv_mlp whose logits come out as a sequence [T=3, N, 10] (time first, as RNN and
    CTC models emit them)."""
    model = conv_mlp()
    fc2 = next(n for n in model.graph.node if n.name == "fc2")
    fc2.output[0] = "logits"
    model.graph.initializer.extend([nh.from_array(np.array([0], np.int64), "axis0"),
                                    nh.from_array(np.array([3, 1, 1], np.int64), "reps")])
    model.graph.node.extend([h.make_node("Unsqueeze", ["logits", "axis0"], ["u"], name="unsq"),
                             h.make_node("Tile", ["u", "reps"], ["y"], name="tile")])
    del model.graph.output[:]
    model.graph.output.append(h.make_tensor_value_info("y", T.FLOAT, [3, "N", 10]))
    return model


@pytest.mark.parametrize("metric", [None, "agreement", "sqnr_db"])
def test_a_sequence_output_gets_a_working_metric(tmp_path, capsys, metric):
    path = _save(_sequence_output(), tmp_path / "seq.onnx")
    args = ["quantize", str(path), "--task", "fidelity", "--eval", "100", "-o", str(tmp_path / "q.onnx"), "--json"]
    code = main(args + (["--metric", metric] if metric else []))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert '"n": 100' in out


def _two_heads():
    """conv_mlp plus a second head reading the flattened features: the first output does
    not depend on the second head's layer."""
    model = conv_mlp()
    w = (np.random.default_rng(3).normal(size=(8 * 6 * 6, 5)) * 0.1).astype(np.float32)
    model.graph.initializer.append(nh.from_array(w, "ws"))
    model.graph.node.append(h.make_node("MatMul", ["f", "ws"], ["side"], name="side_head"))
    model.graph.output.append(h.make_tensor_value_info("side", T.FLOAT, ["N", 5]))
    return model


def test_output_sqnr_reads_every_output():
    model = load_model(_two_heads())
    data = ArrayDataset({"x": images(64)})
    q = Quantizer.calibrated(model, data, persist=False)
    evaluator = Evaluator(model, data, metric="sqnr_db")
    only_side = QuantConfig(layers={"side_head": LayerConfig(w_bits=2, act=ActMode.FLOAT)})
    value = evaluator.measure(q.build(only_side)).value
    assert value < 40, "quantizing the second head left the measured SQNR perfect: only the first output was read"


def test_per_position_agreement():
    from qaev.evaluation import metrics

    ref = np.zeros((2, 3, 4))
    ref[:, :, 1] = 1.0
    q = ref.copy()
    q[0, 0, 2] = 5.0  # one of the three positions of item 0 disagrees
    np.testing.assert_allclose(metrics.agreement_hits(q, ref), [2 / 3, 1.0])
    assert metrics.top1_agreement(q, ref) == pytest.approx(100 * (2 / 3 + 1) / 2)


@pytest.mark.parametrize("build", [_sequence_output, _two_heads])
def test_a_screening_search_on_the_simulator_reads_the_same_outputs(tmp_path, capsys, build):
    path = _save(build(), tmp_path / "m.onnx")
    code = main(["search", str(path), "--task", "fidelity", "--pop", "4", "--generations", "2", "--staged", "end",
                 "--screen-on", "simulator", "--max-drop", "100", "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 0, err
