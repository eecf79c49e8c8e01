"""Host latency side by side: every model timed in every round, the float model the reference."""
from pathlib import Path

import numpy as np
import pytest

from qaev.evaluation.latency import cpu_name, machine_load, side_by_side
from tests.models import conv_mlp, images


def test_side_by_side_times_every_model_and_records_how():
    models = {"float": conv_mlp(), "other": conv_mlp(seed=1).SerializeToString()}
    timed = side_by_side(models, {"x": images(1)}, reference="float", batch=1, rounds=2, repeats=3, warmup=1)
    assert set(timed.ms) == {"float", "other"} and all(ms > 0 for ms in timed.ms.values())
    assert timed.speedup("float") == 1.0
    assert timed.speedup("other") == pytest.approx(timed.ms["float"] / timed.ms["other"])
    settings = timed.settings()
    assert settings["kind"] == "measured" and settings["rounds"] == 2 and settings["repeats"] == 3
    assert settings["batch"] == 1 and settings["threads"] == 1
    load = machine_load()
    assert (settings["load_before"] is None) == (load is None)  # recorded where the system reports it
    assert load is None or (len(settings["load_before"]) == 3 and min(settings["load_before"]) >= 0)


def test_the_reference_must_be_measured():
    with pytest.raises(KeyError, match="reference"):
        side_by_side({"a": conv_mlp()}, {"x": np.zeros((1, 3, 8, 8), np.float32)}, reference="float", batch=1)


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="reads /proc/cpuinfo (Linux)")
def test_cpu_name_names_the_processor_family_and_model():
    first = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first.splitlines())}
    name = cpu_name()
    if "model name" in fields:
        assert name.startswith(fields["model name"])
    if "cpu family" in fields and "model name" in fields:
        assert f"family {fields['cpu family']}, model {fields['model']}" in name
