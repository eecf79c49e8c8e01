"""Hardware tables (contract test over every bundled table), cost estimates, repair, CLI."""
from __future__ import annotations

import json
import math
from importlib import resources

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig
from qaev.errors import ConfigError
from qaev.hardware import Pair, legal_pairs, list_tables, load_table, repair
from qaev.quantize.sizes import estimate_cost, weight_bytes
from qaev.hardware.pairs import W_TOKENS, all_pairs
from qaev.hardware.table import MAX_HOPS
from qaev.cli.hardware import hardware
from qaev.model.layers import LayerInfo

TABLES = list_tables()
UNITS = {
    "memory_bandwidth": "B/s", "energy_per_byte": "pJ/B", "layer_overhead": "s",
    "act_conversion_time": "s/element", "act_conversion_energy": "pJ/element",
    "weight_conversion_time": "s/element", "weight_conversion_energy": "pJ/element",
}


def matmul(name="fc", k=512, n=256, rows=64) -> LayerInfo:
    return LayerInfo(name, "MatMul", f"{name}.w", (k, n), 1, 0, (f"{name}.in",), f"{name}.out", rows * k * n, k * n)


def conv(name="conv", cout=64, cin=32, hw=28) -> LayerInfo:
    return LayerInfo(name, "Conv", f"{name}.w", (cout, cin, 3, 3), 0, None, (f"{name}.in",), f"{name}.out",
                     hw * hw * cout * cin * 9, cout * cin * 9)


def cfg_for(pair: Pair, **kw) -> LayerConfig:
    act = {"float": ActMode.FLOAT, "dyn8": ActMode.DYNAMIC}.get(pair.a, ActMode.STATIC)
    a_bits = int(pair.a) if pair.a in ("4", "8", "16") else 8
    return LayerConfig(w_bits=pair.w_bits, act=act, a_bits=a_bits, **kw)


def one(layer: LayerInfo, pair: Pair, table, *, batch=1, **kw):
    config = QuantConfig(layers={layer.name: cfg_for(pair, **kw)})
    return estimate_cost([layer], config, table, batch=batch)


# ---------------------------------------------------------------- contract: every table
def _raw(name: str) -> dict:
    return yaml.safe_load(resources.files("qaev.hardware").joinpath(f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", TABLES)
def test_table_fields_units_and_sources(name):
    raw, table = _raw(name), load_table(name)
    assert table.kind == raw["kind"] == "estimate"
    assert table.name == name and table.device and table.description
    for key, unit in UNITS.items():
        assert raw[key]["unit"] == unit and raw[key]["source"].strip()
    for key, unit in (("peak_macs_per_s", "MAC/s"), ("energy_per_mac", "pJ/MAC")):
        for item in raw[key].values():
            assert item["unit"] == unit and item["source"].strip()
    assert set(table.peak_macs_per_s) == set(table.energy_per_mac)  # every native pair has both
    for key in table.peak_macs_per_s:
        assert table.rate(Pair.parse(key)) > 0 and table.mac_energy(Pair.parse(key)) >= 0


@pytest.mark.parametrize("name", TABLES)
def test_every_fallback_reaches_a_native_pair_and_never_narrows(name):
    table = load_table(name)
    for pair in all_pairs():
        chain = table.resolve(pair)
        assert table.is_native(chain[-1])
        assert len(chain) - 1 <= MAX_HOPS and len(set(chain)) == len(chain)
        for before, after in zip(chain, chain[1:]):
            assert after.at_least(before), f"{name}: {before} -> {after} narrows a precision"


@pytest.mark.parametrize("name", TABLES)
@pytest.mark.parametrize("gran", [Granularity.PER_TENSOR, Granularity.PER_CHANNEL, Granularity.BLOCK32])
def test_fewer_bits_never_cost_more_memory(name, gran):
    table = load_table(name)
    layer = matmul()
    for a in ("4", "8", "16", "float"):
        sizes, moved = [], []
        for w in W_TOKENS:
            pair = Pair(w, a)
            report = one(layer, pair, table, granularity=gran, symmetric=False)
            sizes.append(report.size_mb)
            if table.is_native(pair):
                moved.append(report.rows[0].weight_bytes_moved + report.rows[0].act_bytes)
        assert sizes == sorted(sizes), f"{name} a{a}: {sizes}"
        assert moved == sorted(moved), f"{name} a{a}: {moved}"


@pytest.mark.parametrize("name", TABLES)
def test_estimates_are_finite_and_repair_lands_on_legal_pairs(name):
    table = load_table(name)
    legal = legal_pairs(table)
    assert set(table.peak_macs_per_s) <= legal
    for layer in (matmul(), conv()):
        for pair in all_pairs():
            report = one(layer, pair, table, batch=2)
            assert report.kind == "estimate"
            assert math.isfinite(report.est_latency_ms) and report.est_latency_ms > 0
            assert math.isfinite(report.est_energy_mj) and report.est_energy_mj > 0
            fixed = repair(cfg_for(pair), layer, table)
            assert str(Pair.of(fixed, layer)) in legal
            assert repair(fixed, layer, table) == fixed


# ---------------------------------------------------------------- malformed tables
def _write(tmp_path, mutate):
    raw = _raw("arm_neon")
    mutate(raw)
    path = tmp_path / "arm_neon.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["peak_macs_per_s"]["w8a8"].pop("unit"), "peak_macs_per_s.w8a8: missing unit"),
    (lambda r: r["memory_bandwidth"].update(unit="GB/s"), "memory_bandwidth.unit: 'GB/s' should be 'B/s'"),
    (lambda r: r.update(colour="red"), "unknown key(s) 'colour'"),
    (lambda r: r["energy_per_mac"].pop("w8adyn8"), "energy_per_mac.w8adyn8"),
    (lambda r: r["fallback"].update({"w4a*": "w3a*"}), "cycles"),
    (lambda r: r["fallback"].pop("w*a16"), "no rule for"),
    (lambda r: r["fallback"].update({"w8a8": "wfloatafloat"}), "fallback.w8a8: a native pair cannot fall back"),
    (lambda r: r["peak_macs_per_s"]["w8a8"].update(value=-1.0), "peak_macs_per_s.w8a8.value"),
    (lambda r: r.update(kind="measured"), "kind: 'measured'"),
    (lambda r: r.pop("layer_overhead"), "layer_overhead: missing"),
    (lambda r: r["nbits_kernel"].update(max_bits=5), "nbits_kernel.max_bits: 5 is not one of"),
    (lambda r: r["nbits_kernel"]["energy_per_mac"].pop("source"), "nbits_kernel.energy_per_mac: missing source"),
    (lambda r: r["nbits_kernel"].update(level=4), "nbits_kernel: unknown key(s) 'level'"),
])
def test_malformed_table_names_file_and_field(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as info:
        load_table(path)
    assert "arm_neon.yaml" in str(info.value) and message in str(info.value)


def test_unknown_target_and_numeric_strings(tmp_path):
    with pytest.raises(ConfigError, match="unknown target 'tpu'"):
        load_table("tpu")
    path = _write(tmp_path, lambda r: r["layer_overhead"].update(value="2e-6"))  # YAML 1.1 string
    assert load_table(path).layer_overhead.value == 2e-6


# ---------------------------------------------------------------- target-specific facts
@pytest.mark.parametrize("layer", [matmul(k=4096, n=4096, rows=1), matmul(), conv(), conv(cout=256, cin=256, hw=7)])
@pytest.mark.parametrize("batch", [1, 32])
def test_ane_w4a16_never_faster_than_w8a8(layer, batch):
    ane = load_table("apple_ane")
    w4 = one(layer, Pair("4", "16"), ane, batch=batch)
    w8 = one(layer, Pair("8", "8"), ane, batch=batch)
    assert w4.est_latency_ms >= w8.est_latency_ms
    assert w4.size_mb < w8.size_mb  # only smaller


@pytest.mark.parametrize("layer", [matmul(k=4096, n=4096, rows=1), matmul(), conv(), conv(cout=256, cin=256, hw=7)])
@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("name", ["host", "intel_vnni"])
def test_ort_cpu_int4_weights_never_faster_than_int8(layer, batch, name):
    table = load_table(name)
    w4 = one(layer, Pair("4", "8"), table, batch=batch)
    w8 = one(layer, Pair("8", "8"), table, batch=batch)
    assert w4.rows[0].executed == "wfloatafloat" and not w4.rows[0].native
    assert w4.est_latency_ms >= w8.est_latency_ms
    assert w4.fallbacks == (("fc" if layer.op_type == "MatMul" else "conv", "w4a8", "wfloatafloat"),)


@pytest.mark.parametrize("name", ["arm_dot", "arm_neon", "intel_vnni", "host"])
def test_matmulnbits_reads_stored_weights_without_a_dequantization_pass(name):
    """A decoding step's projection (memory bound): 4-bit block-wise weights exported as
    MatMulNBits are estimated faster than float and read their stored bytes; the same config
    without an accuracy level runs as the QDQ fallback (dequantized every run)."""
    table, gemv = load_table(name), matmul(k=4096, n=4096, rows=1)
    block = LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity("block32"))

    def cost(level, cfg=block):
        return estimate_cost([gemv], QuantConfig(layers={"fc": cfg}, nbits_accuracy=level), table)

    fused, qdq, flt = cost(4), cost(0), estimate_cost([gemv], QuantConfig(), table)
    row = fused.rows[0]
    assert row.executed == "w4afloat:nbits" and row.native and fused.fallbacks == ()
    assert row.weight_bytes_moved == row.weight_bytes < 4096 * 4096 * 0.7  # 4 bits + a float scale per 32
    assert qdq.rows[0].executed == "wfloatafloat" and not qdq.rows[0].native
    assert fused.est_latency_ms < min(flt.est_latency_ms, qdq.est_latency_ms)
    per_channel = cost(4, LayerConfig(w_bits=4, act=ActMode.FLOAT))  # not block-wise: no MatMulNBits
    assert per_channel.rows[0].executed == "wfloatafloat"
    wide = cost(4, LayerConfig(w_bits=8, act=ActMode.FLOAT, granularity=Granularity("block32")))
    assert not wide.rows[0].executed.endswith(":nbits")


@pytest.mark.parametrize("name", ["apple_ane", "qualcomm_hexagon", "nvidia_tensorrt"])
def test_targets_without_matmulnbits_ignore_the_accuracy_level(name):
    table, gemv = load_table(name), matmul(k=4096, n=4096, rows=1)
    layers = {"fc": LayerConfig(w_bits=4, act=ActMode.FLOAT, granularity=Granularity("block32"))}
    at = [estimate_cost([gemv], QuantConfig(layers=layers, nbits_accuracy=level), table) for level in (0, 4)]
    assert at[0].rows[0] == at[1].rows[0] and table.nbits_kernel is None


def test_hopper_has_no_int4_tensor_cores():
    trt = load_table("nvidia_tensorrt")
    assert trt.executed(Pair("4", "8")) == Pair("8", "8")
    assert trt.executed(Pair("4", "float")) == Pair("float", "float")
    gemv = matmul(k=4096, n=4096, rows=1)  # memory bound: weight-only INT4 reads fewer bytes
    assert one(gemv, Pair("4", "float"), trt).est_latency_ms < one(gemv, Pair("float", "float"), trt).est_latency_ms


def test_repair_picks_the_nearest_representable_pair():
    fc = matmul()
    hexagon, ane, trt, host = (load_table(n) for n in ("qualcomm_hexagon", "apple_ane", "nvidia_tensorrt", "host"))
    assert repair(LayerConfig(w_bits=3, a_bits=8), fc, hexagon).w_bits == 4
    fixed = repair(LayerConfig(w_bits=4, a_bits=16, granularity=Granularity.BLOCK32), fc, ane)
    assert (fixed.w_bits, fixed.act, fixed.granularity) == (4, ActMode.FLOAT, Granularity.BLOCK32)
    assert repair(LayerConfig(w_bits=2, a_bits=8), fc, trt) == LayerConfig(w_bits=8, a_bits=8)
    assert repair(LayerConfig(w_bits=3, a_bits=8), fc, host).w_bits == 4
    same = LayerConfig(w_bits=4, a_bits=8)
    assert repair(same, fc, host) is same


# ---------------------------------------------------------------- hand-computed roofline
TOY = """
version: 1
name: toy
kind: estimate
description: round numbers for a hand check
device: none
float_format: fp32
weight_decompression: runtime
peak_macs_per_s:
  w8a8: {value: 1.0e+9, unit: MAC/s, source: test}
  wfloatafloat: {value: 5.0e+8, unit: MAC/s, source: test}
energy_per_mac:
  w8a8: {value: 0.5, unit: pJ/MAC, source: test}
  wfloatafloat: {value: 4.0, unit: pJ/MAC, source: test}
fallback: {"w*a4": "w*a8", "w*a16": wfloatafloat, "w*adyn8": wfloatafloat, "w*afloat": wfloatafloat,
           "w2a*": "w8a*", "w3a*": "w8a*", "w4a*": "w8a*", "w6a*": "w8a*", "w16a*": wfloatafloat,
           "wfloata*": wfloatafloat}
memory_bandwidth: {value: 1.0e+9, unit: B/s, source: test}
energy_per_byte: {value: 10.0, unit: pJ/B, source: test}
layer_overhead: {value: 1.0e-6, unit: s, source: test}
act_conversion_time: {value: 1.0e-9, unit: s/element, source: test}
act_conversion_energy: {value: 2.0, unit: pJ/element, source: test}
weight_conversion_time: {value: 3.0e-9, unit: s/element, source: test}
weight_conversion_energy: {value: 5.0, unit: pJ/element, source: test}
"""


def test_estimate_matches_hand_computed_roofline(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(TOY)
    toy = load_table(path)
    # fc1: float MatMul 10x64 @ 64x32 (not in the config); fc2: Gemm 10x32 @ 32x16, W8A8 per-channel.
    fc1 = LayerInfo("fc1", "MatMul", "w1", (64, 32), 1, 0, ("x",), "h", 10 * 64 * 32, 64 * 32)
    fc2 = LayerInfo("fc2", "Gemm", "w2", (32, 16), 1, 0, ("h",), "y", 10 * 32 * 16, 32 * 16)
    report = estimate_cost([fc1, fc2], QuantConfig(layers={"fc2": LayerConfig(w_bits=8, a_bits=8)}), toy)
    r1, r2 = report.rows
    # fc1: 20480 MACs / 5e8 = 4.096e-5 s; bytes 2048*4 + (640 + 320)*4 = 12032 -> 1.2032e-5 s.
    assert r1.weight_bytes == 8192 and r1.act_bytes == 3840
    assert r1.est_latency_s == pytest.approx(4.096e-5 + 1e-6)
    assert r1.est_energy_j == pytest.approx((20480 * 4.0 + 12032 * 10.0) * 1e-12)
    # fc2: 5120 MACs / 1e9 = 5.12e-6 s; weight 512 B + 16 fp32 scales = 576 B; acts (320 + 160) * 1 B;
    # memory (576 + 480) / 1e9 = 1.056e-6 s; conversions: 320 inputs float->int8, 160 outputs int8->float.
    assert r2.weight_bytes == 576 and r2.act_bytes == 480 and r2.bound == "compute"
    assert r2.est_latency_s == pytest.approx(5.12e-6 + 1e-6 + 480 * 1e-9)
    assert r2.est_energy_j == pytest.approx((5120 * 0.5 + 1056 * 10.0 + 480 * 2.0) * 1e-12)
    assert report.est_latency_ms == pytest.approx((4.196e-5 + 6.6e-6) * 1e3)
    assert report.size_mb == pytest.approx((8192 + 576) / 1e6)
    assert report.peak_memory_mb == pytest.approx(12032 / 1e6)
    assert report.fallbacks == () and report.warnings == ()
    # W4A8 falls back to W8A8 (repacked): moves 8-bit bytes but its size counts 4 bits.
    w4 = estimate_cost([fc2], QuantConfig(layers={"fc2": LayerConfig(w_bits=4, a_bits=8)}), toy, batch=4)
    assert w4.rows[0].weight_bytes == 256 + 64 and w4.rows[0].weight_bytes_moved == 576
    assert w4.rows[0].macs == 4 * 5120 and w4.fallbacks == (("fc2", "w4a8", "w8a8"),)
    # Weight-only INT4 runs as float with a per-run dequantization of 512 weights.
    wo = estimate_cost([fc2], QuantConfig(layers={"fc2": LayerConfig(w_bits=4, act="float")}), toy).rows[0]
    assert wo.weight_bytes_moved == 320 and wo.conversion_s == pytest.approx(512 * 3e-9)


def test_weight_bytes_are_exact_bit_counts():
    fc = matmul(k=100, n=10)  # 1000 params, K = 100
    assert weight_bytes(fc, None) == 4000
    assert weight_bytes(fc, LayerConfig(w_bits=3, granularity="per_tensor")) == 375 + 4
    assert weight_bytes(fc, LayerConfig(w_bits=4, symmetric=False)) == 500 + 10 * 5
    # block 32 along K=100: 4 blocks per output channel, 40 groups, asymmetric.
    assert weight_bytes(fc, LayerConfig(w_bits=4, granularity="block32", symmetric=False)) == 500 + 40 * 5
    assert weight_bytes(fc, LayerConfig(w_bits=16, granularity="per_tensor", symmetric=False)) == 2000 + 10 * 4


def test_unknown_macs_activation_matmul_and_gather():
    host = load_table("host")
    unknown = LayerInfo("c", "Conv", "w", (8, 3, 3, 3), 0, None, ("x",), "y", None, 216)
    attn = LayerInfo("qk", "MatMulAct", None, (), 0, None, ("q", "k"), "s", 64 ** 3, 0)
    emb = LayerInfo("emb", "Gather", "table", (1000, 64), 0, 1, (), "e", 0, 64000)
    cfg = QuantConfig(layers={"c": LayerConfig(), "qk": LayerConfig(), "emb": LayerConfig(w_bits=4, act="float")})
    report = estimate_cost([emb, unknown, attn], cfg, host)
    assert any("c: MACs unknown" in w for w in report.warnings)
    e, c, a = report.rows
    assert c.macs == 0 and a.wanted == "w8a8" and a.weight_bytes == 0 and a.act_bytes == 3 * 64 * 64
    assert e.macs == 0 and e.wanted == "w4afloat" and e.weight_bytes == 32000 + 1000 * 4 + 256 * 2  # + decoding table
    assert e.weight_bytes_moved < e.weight_bytes  # only the gathered row is read
    with pytest.raises(ConfigError, match="not in the model: nope"):
        estimate_cost([emb], QuantConfig(layers={"nope": LayerConfig()}), host)


# ---------------------------------------------------------------- CLI
def _tiny_model(path):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(np.zeros(8, np.float32), "b")
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), path)


def test_cli_list_show_estimate(tmp_path, capsys):
    from qaev.cli.main import main

    runner = CliRunner()
    out = runner.invoke(hardware, ["list"])
    assert out.exit_code == 0 and all(name in out.output for name in TABLES)
    out = runner.invoke(hardware, ["show", "nvidia_tensorrt"])
    assert out.exit_code == 0 and "MAC/s" in out.output and "1,979 TOPS" in out.output
    assert "w4a8" in out.output and "(estimate)" in out.output
    model, config = tmp_path / "m.onnx", tmp_path / "c.yaml"
    _tiny_model(model)
    config.write_text(yaml.safe_dump(QuantConfig.uniform(["fc"], w_bits=4).to_dict()))
    out = runner.invoke(hardware, ["estimate", str(config), str(model), "--hardware", "host"])
    assert out.exit_code == 0, out.output
    assert "ESTIMATED" in out.output and "wfloatafloat*" in out.output and "est_latency_ms" in out.output
    out = runner.invoke(hardware, ["estimate", str(config), str(model), "--hardware", "host", "--json", "--batch", "2"])
    data = json.loads(out.output)
    assert data["kind"] == "estimate" and data["batch"] == 2 and data["rows"][0]["macs"] == 2 * 16 * 8
    assert data["fallbacks"] == [["fc", "w4a8", "wfloatafloat"]]
    code = main(["hardware", "estimate", str(config), str(model), "--hardware", "tpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("qaev: error:") and "unknown target 'tpu'" in err
