"""``qaev refine``: a front point rebuilt with block reconstruction, measured again on the
run's own splits beside the point as searched."""
import json

from qaev.cli.main import main
from qaev.config_io import load_config


def test_refine_rebuilds_the_recommended_point_and_writes_it_back(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("QAEV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["search", "--pop", "8", "--generations", "3", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    before = json.loads((out / "front.json").read_text())
    chosen = before["recommended"]["id"]
    assert main(["refine", str(out), "--recommended"]) == 0
    text, err = capsys.readouterr()
    assert "block 1/" in err and f"{chosen}r (from {chosen}) on the validation split" in text
    doc = json.loads((out / "front.json").read_text())
    assert doc["points"] == before["points"]
    (entry,) = doc["refined"]
    gap, se = entry["measured"]["validation"]["gap"]  # shipped by `--point recommended` unless clearly worse
    assert doc["recommended"] == {**before["recommended"], **({} if gap > 2 * se else {"refined": entry["id"]})}
    assert "recommended: " in text
    assert entry["id"] == f"{chosen}r" and entry["from"] == chosen
    assert set(entry["measured"]) == {"search", "validation"}
    point = next(p for p in doc["points"] if p["id"] == chosen)
    assert entry["original"]["validation"]["acc_drop"] == point["validation"]["acc_drop"]  # same items, same model
    config = load_config(out / entry["config"])
    assert any(cfg.rounding.value == "block" for cfg in config.layers.values())
    assert not config.block.mirror  # mirror images only when asked for (--mirror)
    capsys.readouterr()
    for pid in (chosen, entry["id"]):  # the refined point exports by its id, from the run's calibration data
        assert main(["export", str(out), "--point", pid, "-o", str(tmp_path / f"{pid}.onnx")]) == 0
    assert (tmp_path / f"{chosen}.onnx").read_bytes() != (tmp_path / f"{entry['id']}.onnx").read_bytes()
    entry["config"] = "../outside.yaml"
    (out / "front.json").write_text(json.dumps(doc))
    code = main(["export", str(out), "--point", entry["id"], "-o", str(tmp_path / "x.onnx")])
    assert code == 2 and "leaves the run directory" in capsys.readouterr().err
    entry["config"] = f"configs/{entry['id']}.yaml"
    (out / "front.json").write_text(json.dumps(doc))
    code = main(["refine", str(out), "--point", "nope"])
    assert code == 2 and "'nope' is not in the front" in capsys.readouterr().err
