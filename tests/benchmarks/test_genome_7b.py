"""benchmarks/genome_7b.py: LLaMA-7B's 226 layers searched, timed, reported and priced on every table."""
import json

from qaev.cli.main import main as qaev
from qaev.hardware import list_tables
from tests.paths import load_benchmark

genome_7b = load_benchmark("genome_7b")
PNG = b"\x89PNG\r\n\x1a\n"


def test_a_short_search_writes_a_report_and_the_estimate_table(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    result = genome_7b.main(["--pop", "8", "--generations", "2", "--out", str(out), "--points", "3"])
    printed = capsys.readouterr().out
    assert "226 layers" in printed and "search machinery" in printed and "ESTIMATES" in printed
    assert result["evaluated"] >= 8 and result["front_size"] >= 1
    assert result["machinery_s"] <= result["wall_s"]
    doc = json.loads((out / "front.json").read_text())
    assert len(doc["layers"]) == 226 and doc["model"]["path"] is None
    assert {o["name"]: o["kind"] for o in doc["objectives"]}["acc_drop"] == "estimated"
    rows = result["table"]
    assert rows[0]["point"] == "float" and 26 < rows[0]["size_gb"] < 27.1  # 6.74 B float32 weights
    assert all(set(row["est_ms_per_token"]) == set(list_tables()) for row in rows)
    assert all(row["size_gb"] < rows[0]["size_gb"] for row in rows[1:])
    w4 = rows[1]  # uniform 4-bit block 32 as MatMulNBits: read at 5 bits a weight, no dequantization pass
    assert w4["point"] == "w4 b32" and all(w4["est_ms_per_token"][t] < rows[0]["est_ms_per_token"][t]
                                           for t in ("arm_dot", "arm_neon", "intel_vnni", "host"))
    (out / "bitmap.png").unlink()
    assert qaev(["report", str(out)]) == 0  # qaev report reads the layer list from front.json
    assert (out / "bitmap.png").read_bytes().startswith(PNG)
    html = (out / "report.html").read_text()
    assert html.count("model weights</b> =") == len(doc["points"])  # every point's per-layer table
    monkeypatch.setattr("qaev.report.html.DETAIL_ROWS", 226)  # room for one point's table only
    monkeypatch.setattr("qaev.report.html.select_points", lambda data: [0])  # as if the bit map drew one
    assert qaev(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert all(f'id="point-{p["id"]}"' in html for p in doc["points"])
    assert html.count("model weights</b> =") == 1 and "per-layer tables for the 1 points" in html
    assert all(p["config"] in html for p in doc["points"][1:])


def test_long_layer_lists_are_labelled_by_group():
    from qaev.report.plots import layer_groups

    names = ["model.embed_tokens", "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj",
             "model.layers.1.self_attn.q_proj", "lm_head"]
    assert layer_groups(names) == [(0, 0, "model.embed_tokens"), (1, 2, "model.layers.0"), (3, 3, "model.layers.1"),
                                   (4, 4, "lm_head")]
