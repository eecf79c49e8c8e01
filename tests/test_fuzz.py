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
