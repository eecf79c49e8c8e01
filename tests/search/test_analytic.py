"""Decoder layer lists (qaev.model.shapes) and the analytic search over them (qaev.search.analytic)."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from pymoo.optimize import minimize as pymoo_minimize

from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig, RoundingInputs
from qaev.errors import ConfigError
from qaev.hardware import load_table, repair
from qaev.model.shapes import (LLAMA_7B, DecoderShape, decoder_layers, decoder_other_bytes, layers_from_json,
                               layers_to_json)
from qaev.search.analytic import AnalyticProblem, noise_drop
from qaev.search.front import non_dominated
from qaev.search.optimize import make_algorithm
from qaev.search.space import SearchSpace

SMALL = DecoderShape(vocab=64, d_model=32, layers=3, heads=4, kv_heads=2, ffn_hidden=48)


def test_llama_7b_has_226_layers_and_its_parameter_count():
    layers = decoder_layers(LLAMA_7B)
    assert len(layers) == 226 and layers[0].op_type == "Gather" and layers[-1].name == "lm_head"
    # 6,738,415,616 parameters in the checkpoint, of which 65 RMSNorm scales of 4096
    assert sum(layer.params for layer in layers) == LLAMA_7B.parameters == 6_738_415_616 - 65 * 4096
    assert decoder_other_bytes(LLAMA_7B) == 65 * 4096 * 4
    down = next(layer for layer in layers if layer.name == "model.layers.31.mlp.down_proj")
    assert down.weight_shape == (11008, 4096) and down.macs == 11008 * 4096 and down.reduce_axis == 0
    assert decoder_layers(LLAMA_7B, tokens=8)[5].macs == 8 * layers[5].macs


def test_the_shipped_decoder_shape_counts_its_weights():
    pydocs = DecoderShape(vocab=4096, d_model=256, layers=4, heads=4, kv_heads=2, ffn_hidden=688)
    assert pydocs.parameters + 9 * 256 == 4_999_424  # problems/assets/llama-pydocs/config.json, norms included
    with pytest.raises(ConfigError):
        DecoderShape(vocab=64, d_model=30, layers=1, heads=4, kv_heads=2, ffn_hidden=8)


def test_layer_lists_round_trip_through_json():
    layers = decoder_layers(SMALL)
    assert layers_from_json(json.loads(json.dumps(layers_to_json(layers)))) == layers
    with pytest.raises(ConfigError):
        layers_from_json([{"name": "x"}])


def _problem(seed_space: bool = True) -> AnalyticProblem:
    layers = decoder_layers(SMALL)
    space = SearchSpace(layers=layers, w_bits=(2, 4, 8, None), acts=("float", "dyn8"),
                        granularities=(Granularity("block32"), Granularity.PER_CHANNEL), roundings=("gptq", "codebook"))
    return AnalyticProblem(layers, metric=noise_drop(layers), space=space, table=load_table("arm_dot"),
                           other_bytes=decoder_other_bytes(SMALL))


def test_noise_drop_falls_with_bits_and_scales_to_its_reference():
    layers = decoder_layers(SMALL)
    drop = noise_drop(layers, scale=2.0)
    uniform = {b: QuantConfig(layers={layer.name: LayerConfig(w_bits=b, act=ActMode.FLOAT) for layer in layers})
               for b in (2, 4, 8)}
    assert drop(uniform[4]) == pytest.approx(2.0)
    assert drop(uniform[2]) > drop(uniform[4]) > drop(uniform[8]) > 0 == drop(QuantConfig())


def _search(seed: int):
    problem = _problem()
    algorithm = make_algorithm(problem, pop_size=12, predictor=False)
    pymoo_minimize(problem, algorithm, ("n_gen", 4), seed=seed, copy_algorithm=True)
    return problem


def test_the_analytic_search_runs_the_operators_and_is_seeded():
    problem = _search(3)
    front = problem.front()
    assert front and len(problem.records) > 12
    F = np.array([[r.objectives[n] for n in problem.objectives] for r in front])
    assert len(non_dominated(F)) == len(front)
    arm = load_table("arm_dot")
    for record in front:
        config = QuantConfig.from_dict(record.config)
        for layer in problem.quantizer.layers:  # repaired onto the table
            cfg = config.layer(layer.name)
            assert cfg is None or repair(cfg, layer, arm) == cfg
    again = _search(3)
    assert sorted(r.key for r in again.front()) == sorted(r.key for r in front)
    assert problem.metric_s >= 0 and problem.cost_s > 0


def test_repair_drops_a_codebook_that_a_target_widens():
    table = load_table("qualcomm_hexagon")  # 2-bit weights become 4-bit there
    gather = decoder_layers(SMALL)[0]
    fixed = repair(LayerConfig(w_bits=2, act=ActMode.FLOAT, rounding="codebook"), gather, table)
    assert fixed.rounding.value == "nearest" and fixed.w_bits != 2


def _reference_hash(config: QuantConfig) -> str:
    """The hash as first defined: sha256 of the JSON of the whole payload."""
    layers = {n: c.effective().to_dict() for n, c in sorted(config.layers.items()) if not c.is_float}
    payload = {"layers": layers,
               "calibration": config.calibration.value if any(c.act is ActMode.STATIC
                                                              for c in config.layers.values()) else None,
               "scale_rule": config.scale_rule.value if layers else None,
               "ranges": {k: list(v) for k, v in config.ranges.items()}}
    if layers and config.rounding_inputs is not RoundingInputs.FLOAT:
        payload["rounding_inputs"] = config.rounding_inputs.value
    if config.nbits_accuracy and any(c.act is ActMode.FLOAT and c.granularity.block_size and c.w_bits is not None
                                     and c.w_bits <= 4 for c in config.layers.values()):
        payload["nbits_accuracy"] = config.nbits_accuracy
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def test_config_keys_keep_their_value_when_written_piece_by_piece():
    from dataclasses import replace

    layers = decoder_layers(SMALL)
    space = SearchSpace(layers=layers, w_bits=(2, 3, 4, 8, 16, None), acts=("a8", "a16", "float", "dyn8"),
                        granularities=(Granularity.PER_CHANNEL, Granularity("block32"), Granularity.PER_TENSOR),
                        symmetric=(True, False), roundings=("gptq", "nearest", "codebook"),
                        calibrations=("minmax", "mse"), nbits_accuracy=4)
    rng = np.random.default_rng(0)
    for k in range(60):
        config = space.decode(rng.integers(0, space.upper() + 1))
        if k % 2:
            config = replace(config.with_ranges({"a": (0.0, 1.5), "b": (-2.0, 3.0)}),
                             rounding_inputs=RoundingInputs.QUANTIZED)
        assert config.key() == _reference_hash(config)
    assert QuantConfig().key() == _reference_hash(QuantConfig())
