"""A file qaev writes is whole or absent: a full disk leaves the old file (or none) under the
final name, never a truncated one, and is exit 2 with one line naming the path."""
import resource
import subprocess
import sys

import onnx
import pytest

from qaev.errors import QaevError
from qaev.files import write_atomic
from tests.models import conv_mlp


def _limited(limit: int):
    """Run the child with files limited to ``limit`` bytes: a write past it fails as on a
    full disk (EFBIG; Python ignores SIGXFSZ)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def _qaev(args, *, limit=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "qaev.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, preexec_fn=_limited(limit) if limit else None, timeout=300)


@pytest.fixture()
def run_dir(tmp_path):
    out = tmp_path / "run"
    done = _qaev(["search", "--pop", "4", "--generations", "1", "--eval", "100", "--quiet", "--out", out])
    assert done.returncode == 0, done.stderr
    return out


def _assert_one_line(done, *needles):
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("qaev: error:"), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_export_onto_a_full_disk_keeps_the_old_file(run_dir, tmp_path):
    target = tmp_path / "p00.onnx"
    target.write_bytes(b"the previous file")
    done = _qaev(["export", run_dir, "--point", "p00", "-o", target], limit=1000)
    _assert_one_line(done, str(target))
    assert target.read_bytes() == b"the previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p00.onnx", "run"], "a temporary file was left behind"


def test_quantize_onto_a_full_disk_writes_nothing(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(conv_mlp(), str(model))
    target = tmp_path / "q.onnx"
    done = _qaev(["quantize", model, "--task", "fidelity", "--no-eval", "-o", target], limit=4000)
    _assert_one_line(done, str(target))
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_run_directory_on_a_full_disk_stops_with_one_line(run_dir):
    done = _qaev(["report", run_dir], limit=3000)  # pareto.png and report.html: past the limit
    _assert_one_line(done, str(run_dir))
    assert not any(p.name.endswith(".tmp") for p in run_dir.iterdir())


def test_write_atomic_keeps_permissions_of_an_ordinary_file_and_refuses_a_directory(tmp_path):
    import os

    path = write_atomic(tmp_path / "a.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    with pytest.raises(QaevError, match="is a directory"):
        write_atomic(tmp_path, "x")
    assert os.listdir(tmp_path) == ["a.txt"]


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_search_whose_memo_fills_the_disk_stops_with_one_line_naming_it(tmp_path):
    out = tmp_path / "run"
    done = _qaev(["search", "--pop", "8", "--generations", "2", "--eval", "100", "--quiet", "--out", out], limit=6000)
    _assert_one_line(done, "evaluations.jsonl")
    lines = (out / "evaluations.jsonl").read_text().splitlines()
    assert lines and all(line.endswith("}") for line in lines[:-1])
