"""``qaev report``: a tiny real search, then the HTML table checked against front.json."""
import json
from html.parser import HTMLParser

import pytest

from qaev.cli.main import main
from qaev.cli.report import report
from qaev.errors import ConfigError

PNG = b"\x89PNG\r\n\x1a\n"


class _Front(HTMLParser):
    """Collects the rows of ``<table id="front">`` (ids and data-value of each cell) and
    the inline images."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self._in_front = [], [], False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._in_front = a.get("id") == "front"
        elif tag == "tr" and self._in_front and "data-id" in a:
            self.rows.append({"id": a["data-id"], "cells": {}})
        elif tag == "td" and self._in_front and self.rows and "data-key" in a:
            self.rows[-1]["cells"][a["data-key"]] = a.get("data-value")
        elif tag == "img":
            self.images.append(a["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_front = False


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    assert main(["search", "--pop", "6", "--generations", "2", "--out", str(out), "--quiet"]) == 0
    return out


def test_report_table_matches_front_and_images_are_png(run_dir, capsys):
    doc = json.loads((run_dir / "front.json").read_text())
    first = doc["points"][0]["id"]
    assert main(["export", str(run_dir), "--point", first, "-o", str(run_dir / "models" / f"{first}.onnx")]) == 0
    (run_dir / "baselines.json").write_text(json.dumps([{"name": "W8A8", "objectives": {"acc_drop": 0.2,
                                                                                          "size_mb": 0.05}}]))
    assert main(["report", str(run_dir)]) == 0  # through the group, as a user runs it
    assert "report.html" in capsys.readouterr().out

    for name in ("pareto.png", "bitmap.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000
    parser = _Front()
    html = (run_dir / "report.html").read_text()
    parser.feed(html)

    assert [r["id"] for r in parser.rows] == [p["id"] for p in doc["points"]]
    for row, point in zip(parser.rows, doc["points"]):
        for name, value in point["objectives"].items():
            assert float(row["cells"][name]) == value  # repr round-trips exactly
        assert float(row["cells"]["metric"]) == point["metric"]
        assert row["cells"]["exported"] == ("1" if point["id"] == first else "0")
        assert float(row["cells"]["host_latency_ms"]) == point["host_latency_ms"]  # the exported file, measured
        assert float(row["cells"]["host_speedup"]) == point["host_speedup"]
        assert float(row["cells"]["x_smaller"]) == point["sizes"]["x_smaller"]
        assert float(row["cells"]["file_mb"]) == point["sizes"]["file_mb"]
        assert f"qaev export {run_dir} --point {point['id']} -o {point['id']}.onnx" in html
    # both pictures are embedded, so the page stands alone
    import base64

    inline = [base64.b64decode(src.split(",", 1)[1]) for src in parser.images if src.startswith("data:image/png")]
    assert len(inline) == 2 and all(b.startswith(PNG) for b in inline)
    # every point's config and the size per layer, whose total is front.json's exact size
    for point in doc["points"]:
        assert f'id="point-{point["id"]}"' in html
        assert f"model weights</b> = {point['objectives']['size_mb']:.6f} MB" in html
    assert "measured" in html and "exact" in html and "W8A8" in html
    assert f"with the float model ({doc['host_latency']['float_ms']:.2f} ms)" in html
    assert doc["versions"]["onnxruntime"] in html and "seed" in html


def test_report_of_a_directory_without_front_is_a_one_line_error(tmp_path, capsys):
    from qaev.cli.main import cli

    if "report" not in cli.commands:  # registered by qaev.cli.main; until then call the command itself
        with pytest.raises(ConfigError, match="front.json"):
            report.main([str(tmp_path)], standalone_mode=False)
        return
    assert main(["report", str(tmp_path)]) == 2
    assert "front.json" in capsys.readouterr().err


def test_bad_baselines_are_named(run_dir, tmp_path):
    from qaev.report import write_report

    (run_dir / "baselines.json").write_text(json.dumps([{"name": "x", "objectives": {"nope": 1}}]))
    try:
        with pytest.raises(ConfigError, match="nope"):
            write_report(run_dir, out_dir=tmp_path)
    finally:
        (run_dir / "baselines.json").unlink()
