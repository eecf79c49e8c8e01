"""``qaev evaluate`` and ``qaev quantize`` say on stderr what a slow stage is doing, and
leave ``--json`` on stdout alone."""
import io
import json
import time

from qaev.cli import stages
from qaev.cli.main import main


def test_a_quick_stage_prints_nothing():
    err = io.StringIO()
    with stages.stage("measuring", err=err):
        pass
    assert err.getvalue() == ""


def test_a_stage_longer_than_the_threshold_prints_its_start_then_its_time(monkeypatch):
    monkeypatch.setattr(stages, "AFTER_S", 0.05)
    err = io.StringIO()
    with stages.stage("measuring", err=err):
        time.sleep(0.3)
    first, last = err.getvalue().splitlines()
    assert first == "qaev: measuring ..." and last.startswith("qaev: measuring: done in 0.")


def test_evaluate_json_stays_one_object_on_stdout_with_stage_lines_on_stderr(monkeypatch, capsys):
    monkeypatch.setattr(stages, "AFTER_S", 0.0)
    assert main(["evaluate", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n"] > 0
    assert "qaev: measuring " in err and " samples: done in " in err


def test_quantize_reports_its_stages(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(stages, "AFTER_S", 0.0)
    assert main(["quantize", "--w-bits", "8", "-o", str(tmp_path / "q.onnx"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["drop"] is not None
    assert [line.split(" on ")[0].split(":")[1].strip() for line in err.splitlines() if "done in" in line] == [
        "calibrating", f"building and writing {tmp_path / 'q.onnx'}", "measuring the float and the quantized model"]
