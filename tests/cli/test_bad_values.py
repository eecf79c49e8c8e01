"""Every bad value is exit 2 with one error line naming it, never an internal error, a
traceback, a run of minutes or an allocation of terabytes."""
import json
import struct
import time

import numpy as np
import onnx
import pytest
import yaml
from PIL import Image

from qaev.cli.main import main
from tests.models import attention_like, conv_mlp

_SEARCH = ["search", "--pop", "4", "--generations", "1", "--eval", "100", "--quiet"]


def run(capsys, *args):
    started = time.perf_counter()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert time.perf_counter() - started < 60, f"took {time.perf_counter() - started:.0f} s"
    return code, out, err


def one_error_line(code, err, *needles):
    errors = [line for line in err.strip().splitlines() if line.startswith("qaev: error")]
    assert code == 2 and len(errors) == 1, err
    assert "Traceback" not in err and "internal error" not in err, err
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A float model, its 4-bit config, and a finished run directory."""
    root = tmp_path_factory.mktemp("bad")
    model = root / "m.onnx"
    onnx.save(conv_mlp(), str(model))
    config = root / "c.yaml"
    assert main(["quantize", str(model), "--task", "fidelity", "--per-channel", "--w-bits", "4", "--no-eval",
                 "-o", str(root / "q.onnx"), "--save-config", str(config)]) == 0
    run_dir = root / "run"
    assert main([*_SEARCH, "--out", str(run_dir)]) == 0
    return {"root": root, "model": model, "config": config, "run": run_dir}


@pytest.mark.parametrize("args, needle", [
    (["--pop", "0"], "pop"), (["--generations", "0"], "generations"), (["--seed", "-1"], "seed"),
    (["--exclude", "re:("], "regular expression"), (["--max-drop", "nan"], "--max-drop"),
    (["--timeout", "nan"], "--timeout"), (["--workers", "-2"], "--workers"),
    (["--roundings", "gptq,block"], "qaev refine RUN"),
])
def test_bad_search_options(tmp_path, capsys, args, needle):
    code, _, err = run(capsys, *_SEARCH, *args, "--out", tmp_path / "r")
    one_error_line(code, err, needle)
    assert not (tmp_path / "r").exists()


def test_an_invalid_exclude_pattern_in_quantize(files, tmp_path, capsys):
    code, _, err = run(capsys, "quantize", files["model"], "--task", "fidelity", "--exclude", "re:[a-", "-o",
                       tmp_path / "q.onnx")
    one_error_line(code, err, "re:[a-")


def _config_variant(files, tmp_path, kind):
    doc = yaml.safe_load(files["config"].read_text())
    path = tmp_path / "c.yaml"
    if kind == "infinite range":
        first = sorted(doc["ranges"])[0]
        doc["ranges"][first] = [float("-inf"), 1.0]
        path.write_text(yaml.safe_dump(doc))
    elif kind == "nan range":
        doc["ranges"][sorted(doc["ranges"])[0]] = [float("nan"), float("nan")]
        path.write_text(yaml.safe_dump(doc))
    elif kind == "duplicate key":
        path.write_text(files["config"].read_text() + "calibration: minmax\n")
    elif kind == "nested yaml":
        path.write_text("layers: " + "[" * 50000 + "]" * 50000 + "\n")
    elif kind == "nested json":
        path = tmp_path / "c.json"
        path.write_text('{"layers": ' + "[" * 50000 + "]" * 50000 + "}")
    elif kind == "alias bomb":
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "oversized":
        with open(path, "w") as fh:
            fh.write("version: 1\nx: '")
            fh.write("a" * (20 * 1024 * 1024))
            fh.write("'\n")
    elif kind == "duplicate json key":
        path = tmp_path / "c.json"
        path.write_text(json.dumps(doc)[:-1] + ', "version": 1}')
    return path


@pytest.mark.parametrize("kind, needle", [
    ("infinite range", "finite"), ("nan range", "finite"), ("duplicate key", "duplicate key 'calibration'"),
    ("nested yaml", "nested"), ("nested json", "nested"), ("alias bomb", "values"), ("oversized", "MiB"),
    ("duplicate json key", "duplicate key 'version'"),
])
def test_bad_config_files(files, tmp_path, capsys, kind, needle):
    path = _config_variant(files, tmp_path, kind)
    code, _, err = run(capsys, "apply", path, files["model"], "-o", tmp_path / "o.onnx")
    one_error_line(code, err, needle)


def _imagenet_folder(root, classes):
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["filename,class_index"]
    for i, c in enumerate(classes):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        rows.append(f"{i}.png,{c}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_class_indexes_outside_the_models_classes(files, tmp_path, capsys):
    data = _imagenet_folder(tmp_path / "imgs", [i % 10 for i in range(30)] + [5000])
    code, _, err = run(capsys, "evaluate", files["model"], "--task", "imagenet", "--data", data, "--size", "8",
                       "--calib", "5")
    one_error_line(code, err, "5000", "0..9")


def _huge_npy(folder, shape_text):
    folder.mkdir()
    np.save(folder / "a.npy", np.zeros((40, 3, 8, 8), np.float32))
    raw = (folder / "a.npy").read_bytes()
    size = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + size].decode().replace("(40, 3, 8, 8)", shape_text)
    header = header.rstrip().ljust(size - 1) + "\n"
    (folder / "a.npy").write_bytes(raw[:10] + header.encode() + raw[10 + size:])
    return folder


def test_an_npy_header_claiming_more_memory_than_the_machine_has(files, tmp_path, capsys):
    data = _huge_npy(tmp_path / "npy", "(40000000000, 3, 8, 8)")
    code, _, err = run(capsys, "quantize", files["model"], "--task", "fidelity", "--data", data, "-o",
                       tmp_path / "q.onnx")
    one_error_line(code, err, "a.npy", "claims")


@pytest.mark.parametrize("shape", ["x=1x3x100000x100000", "x=1x3x0x8"])
def test_huge_or_empty_shapes(files, tmp_path, capsys, shape):
    code, _, err = run(capsys, "quantize", files["model"], "--task", "fidelity", "--shape", shape, "-o",
                       tmp_path / "q.onnx")
    one_error_line(code, err)


def test_huge_shape_of_a_dynamic_dim(tmp_path, capsys):
    model = tmp_path / "attn.onnx"
    onnx.save(attention_like(), str(model))
    code, _, err = run(capsys, "quantize", model, "--task", "fidelity", "--shape", "ids=1x100000000000", "-o",
                       tmp_path / "q.onnx")
    one_error_line(code, err, "GiB")


def test_an_output_naming_a_directory(files, tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    for args in (["quantize", files["model"], "--task", "fidelity", "--no-eval", "-o", folder],
                 ["apply", files["config"], files["model"], "-o", folder],
                 ["export", files["run"], "--point", "p00", "-o", folder]):
        code, _, err = run(capsys, *args)
        assert code == 2 and "is a directory" in err and "internal error" not in err, err


@pytest.mark.parametrize("damage", ["[]", '{"schema": "qaev.front/1"}', "{", "[" * 100000,
                                    "points-outside", "nan-objective", "text-latency"])
def test_a_damaged_front(files, tmp_path, capsys, damage):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(files["run"], run_dir)
    doc = json.loads((run_dir / "front.json").read_text())
    if damage == "points-outside":
        doc["points"][0]["config"] = "../../../../etc/passwd"
        text = json.dumps(doc)
    elif damage == "nan-objective":
        doc["points"][0]["objectives"]["size_mb"] = float("nan")
        text = json.dumps(doc)
    elif damage == "text-latency":
        doc["points"][0]["host_latency_ms"] = "fast"
        text = json.dumps(doc)
    else:
        text = damage
    (run_dir / "front.json").write_text(text)
    for args in (["export", run_dir, "--point", "p00", "-o", tmp_path / "e.onnx"], ["report", run_dir]):
        code, _, err = run(capsys, *args)
        one_error_line(code, err, "front.json")


def test_damaged_settings_and_memo_lines_on_resume(files, tmp_path, capsys):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(files["run"], run_dir)
    with open(run_dir / "evaluations.jsonl", "a") as fh:
        fh.write("[" * 100000 + "]" * 100000 + "\n" + '{"key": "x", "objectives": {"acc_drop": "abc"}}\n')
    code, _, err = run(capsys, *_SEARCH, "--out", run_dir, "--resume")
    assert code == 0, err  # damaged lines are skipped and counted, the rest resumes
    (run_dir / "settings.json").write_text("{not json")
    code, _, err = run(capsys, *_SEARCH, "--out", run_dir, "--resume")
    one_error_line(code, err, "settings.json")


def test_a_cache_folder_that_is_a_file(files, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "cachefile"
    blocker.write_text("x")
    monkeypatch.setenv("QAEV_CACHE", str(blocker))
    code, _, err = run(capsys, "quantize", files["model"], "--task", "fidelity", "-o", tmp_path / "q.onnx")
    one_error_line(code, err, "QAEV_CACHE")


def test_an_array_file_of_python_objects(files, tmp_path, capsys):
    folder = tmp_path / "objects"
    folder.mkdir()
    np.save(folder / "a.npy", np.array([{"a": 1}] * 50, dtype=object), allow_pickle=True)
    code, _, err = run(capsys, "quantize", files["model"], "--task", "fidelity", "--data", folder, "-o",
                       tmp_path / "q.onnx")
    one_error_line(code, err, "Python objects")


def test_hardware_estimate_errors_are_one_qaev_error_line(files, tmp_path, capsys):
    code, _, err = run(capsys, "hardware", "estimate", files["config"], files["model"], "--hardware", "tpu")
    one_error_line(code, err, "tpu")
    assert err.startswith("qaev: error:")
