"""Random mutations of a tiny model's bytes and of configs: a clear error or success,
never a traceback, an internal error or a hang."""
import time

import numpy as np
import onnx
import pytest
import yaml

from qaev.cli.main import main
from tests.models import conv_mlp


def _mutate(data: bytes, rng) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(4)
    if kind == 0:  # flip bytes
        for i in rng.integers(0, len(buf), size=rng.integers(1, 8)):
            buf[i] = int(rng.integers(256))
    elif kind == 1:  # truncate
        buf = buf[: rng.integers(0, len(buf))]
    elif kind == 2:  # splice a chunk elsewhere
        a, b = sorted(rng.integers(0, len(buf), size=2))
        at = int(rng.integers(0, len(buf)))
        buf = buf[:at] + buf[a:b] + buf[at:]
    else:  # insert random bytes
        at = int(rng.integers(0, len(buf)))
        buf = buf[:at] + bytes(rng.integers(0, 256, size=rng.integers(1, 16)).astype(np.uint8)) + buf[at:]
    return bytes(buf)


def _check(capsys, args, started):
    code = main([str(a) for a in args])
    _, err = capsys.readouterr()
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    assert time.perf_counter() - started < 30


@pytest.fixture(scope="module")
def valid_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    model = tmp_path_factory.mktemp("m") / "m.onnx"
    onnx.save(conv_mlp(), str(model))
    assert main(["quantize", str(model), "--task", "fidelity", "--per-channel", "--w-bits", "4", "--no-eval",
                 "-o", str(model.with_name("q.onnx")), "--save-config", str(path)]) == 0
    return path, model


def test_fuzzed_model_bytes(tmp_path, capsys, valid_config):
    config, model = valid_config
    rng = np.random.default_rng(0)
    data = model.read_bytes()
    for i in range(200):
        bad = tmp_path / f"m{i}.onnx"
        bad.write_bytes(_mutate(data, rng))
        _check(capsys, ["apply", config, bad, "-o", tmp_path / "out.onnx"], time.perf_counter())


_VALUES = [0, 1, 5, 8, 64, -3, 2.5, "float", "block32", "per_tensor", None, True, "x", [1, 2], [3, 1], {"a": 1}]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _mutate_config(doc, rng):
    doc = yaml.safe_load(yaml.safe_dump(doc))
    layer = _pick(rng, sorted(doc["layers"]))
    field = _pick(rng, ["w_bits", "granularity", "symmetric", "act", "a_bits", "extra"])
    value = _pick(rng, _VALUES)
    target = rng.integers(5)
    if target == 0:
        doc["layers"][layer][field] = value
    elif target == 1:
        doc["layers"][f"{layer}_renamed"] = doc["layers"].pop(layer)
    elif target == 2:
        doc[_pick(rng, ["calibration", "scale_rule", "version", "ranges", "model_sha256", "colour"])] = value
    elif target == 3 and doc["ranges"]:
        doc["ranges"][_pick(rng, sorted(doc["ranges"]))] = value
    else:
        doc["layers"] = value
    return doc


def test_fuzzed_configs(tmp_path, capsys, valid_config):
    config, model = valid_config
    base = yaml.safe_load(config.read_text())
    rng = np.random.default_rng(1)
    for i in range(150):
        path = tmp_path / f"c{i}.yaml"
        path.write_text(yaml.safe_dump(_mutate_config(base, rng)))
        _check(capsys, ["apply", path, model, "-o", tmp_path / "out.onnx"], time.perf_counter())


_NON_FINITE = [".inf", "-.inf", ".nan", "1e999", "-1e999"]


def _text_mutation(text: str, rng) -> str:
    """Mutations a YAML dump cannot produce: duplicate keys, deep nesting, non-finite numbers."""
    kind = rng.integers(3)
    lines = text.splitlines()
    if kind == 0:  # repeat a line, as a hand edit that leaves an old value behind does
        i = int(rng.integers(len(lines)))
        lines.insert(i + 1, lines[i])
    elif kind == 1:  # nest a value deeply
        depth = int(rng.integers(20, 3000))
        i = int(rng.integers(len(lines)))
        key = lines[i].split(":")[0]
        lines[i] = f"{key}: " + "[" * depth + "1" + "]" * depth
    else:  # a number becomes non-finite
        numeric = [i for i, line in enumerate(lines) if line.strip().lstrip("- ").replace(".", "", 1).replace(
            "e-", "", 1).lstrip("-").isdigit()]
        if numeric:
            i = numeric[int(rng.integers(len(numeric)))]
            head = lines[i][: len(lines[i]) - len(lines[i].lstrip(" -"))]
            tail = lines[i].split(":")[0] + ": " if ":" in lines[i] else head
            lines[i] = tail + _NON_FINITE[int(rng.integers(len(_NON_FINITE)))]
    return "\n".join(lines) + "\n"


def test_fuzzed_config_text(tmp_path, capsys, valid_config):
    config, model = valid_config
    base = yaml.safe_load(config.read_text())
    rng = np.random.default_rng(2)
    for i in range(120):
        path = tmp_path / f"t{i}.yaml"
        path.write_text(_text_mutation(yaml.safe_dump(_mutate_config(base, rng) if i % 3 == 0 else base), rng))
        _check(capsys, ["apply", path, model, "-o", tmp_path / "out.onnx"], time.perf_counter())


def _external_model(folder, rng):
    """conv_mlp with its first weight in a Constant node and, at random, an If on the output
    whose branches read initializers of the main graph and hold one of their own; the data of
    the Constant or of the body's initializer moved to a file."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    model = conv_mlp(constant_weight=True)
    tensor = next(n for n in model.graph.node if n.op_type == "Constant").attribute[0].t
    if rng.integers(2):
        fc2 = next(n for n in model.graph.node if n.name == "fc2")
        fc2.output[0] = "logits"
        branches = [h.make_graph([h.make_node("Mul", ["logits", k], [f"o{i}"], name=f"mul{i}")], f"b{i}", [],
                                 [h.make_tensor_value_info(f"o{i}", T.FLOAT, None)])
                    for i, k in enumerate(("k_then", "k_else"))]
        inner = nh.from_array(np.full(10, 4.0, np.float32), "k_inner")  # an initializer of the body itself
        branches[0].initializer.append(inner)
        branches[0].node.append(h.make_node("Add", ["o0", "k_inner"], ["o0b"], name="add_inner"))
        branches[0].output[0].name = "o0b"
        model.graph.initializer.extend([nh.from_array(np.full(10, 2.0, np.float32), "k_then"),
                                        nh.from_array(np.full(10, 3.0, np.float32), "k_else"),
                                        nh.from_array(np.array(bool(rng.integers(2))), "cond")])
        model.graph.node.append(h.make_node("If", ["cond"], ["y"], name="if", then_branch=branches[0],
                                            else_branch=branches[1]))
        if rng.integers(2):  # the copy of the body the If node holds
            then = next(a for a in model.graph.node[-1].attribute if a.name == "then_branch")
            tensor = then.g.initializer[0]
    data = nh.to_array(tensor).tobytes()
    (folder / "w.bin").write_bytes(data)
    tensor.ClearField("raw_data")
    tensor.data_location = T.EXTERNAL
    locations = ["w.bin", "../secret.bin", "/etc/hostname", "missing.bin", "sub/../w.bin", "./w.bin", "", "w.bin/"]
    offsets = ["0", "0", "-4", "999999999", "x", "4"]
    lengths = [str(len(data)), str(len(data)), "", "-1", str(len(data) * 50), "y"]
    for key, options in (("location", locations), ("offset", offsets), ("length", lengths)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, options[int(rng.integers(len(options)))]
    return model


def test_fuzzed_external_data(tmp_path, capsys, monkeypatch):
    """Whatever a model's external data entries say, qaev reads nothing outside its folder:
    a secret beside the folder (and in the current directory) never reaches the output."""
    secret = b"SECRET-" * 200
    (tmp_path / "secret.bin").write_bytes(secret)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(3)
    for i in range(60):
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        onnx.save(_external_model(folder, rng), str(folder / "m.onnx"))
        (folder / "secret.bin").unlink(missing_ok=True)
        out = tmp_path / f"q{i}.onnx"
        _check(capsys, ["quantize", folder / "m.onnx", "--task", "fidelity", "--no-eval", "-o", out],
               time.perf_counter())
        assert not out.exists() or b"SECRET-" not in out.read_bytes()
