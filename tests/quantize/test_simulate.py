"""The screening simulator: one float graph standing in for every candidate's QDQ model."""
import numpy as np
import pytest

from qaev.evaluation import screening
from qaev.config import ActMode, CalibMethod, Granularity, LayerConfig, QuantConfig, Rounding, ScaleRule
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.problems import get_problem
from qaev.quantize import Quantizer, uniform_config
from qaev.quantize.simulate import Simulator
from qaev.search.optimize import minimize
from qaev.model.session import make_session, run_batches
from qaev.search.space import SearchSpace
from qaev.evaluation.staging import Staging
from tests.models import attention_like, conv_mlp, images

_WIDE = dict(w_bits=(2, 3, 4, 8, 16, None), acts=("a4", "a8", "a16", "float", "dyn8"),
             granularities=(Granularity.PER_TENSOR, Granularity.PER_CHANNEL, Granularity.BLOCK32),
             symmetric=(True, False), calibrations=(CalibMethod.MINMAX, CalibMethod.PERCENTILE),
             scale_rules=(ScaleRule.FLOAT, ScaleRule.POW2),
             roundings=(Rounding.NEAREST, Rounding.GPTQ, Rounding.CODEBOOK), bias_corrections=(False, True))


def _tiny(name):
    if name == "conv_mlp":
        model, feed = load_model(conv_mlp()), {"x": images(48)}
    else:
        model = load_model(attention_like())
        feed = {"ids": np.random.default_rng(0).integers(0, 50, (48, 6)).astype(np.int64)}
    return Quantizer.calibrated(model, ArrayDataset(inputs=feed, name=name), persist=False), feed


@pytest.mark.parametrize("name", ["conv_mlp", "attention_like"])
def test_simulated_outputs_equal_the_qdq_model_run_in_float(name):
    """Every covered config (weights of 2-16 bits, static 4/8/16-bit activations, every
    granularity, asymmetric grids, GPTQ, codebook tables and bias correction, a quantized
    graph output): the simulator's outputs are the QDQ model's evaluated without fusion, up to float32
    rounding (the runtime packs constant weights, not inputs, its own way)."""
    q, feed = _tiny(name)
    space = SearchSpace(layers=q.layers, **_WIDE)
    sim = Simulator(q, level="disable")
    rng = np.random.default_rng(3)
    batch = [{k: v[:16] for k, v in feed.items()}]
    covered = 0
    for _ in range(40):
        config = q.resolve(space.decode(rng.integers(0, space.upper() + 1)))
        if not sim.covers(config):
            continue
        covered += 1
        simulated = run_batches(sim.session, [{**batch[0], **sim.feed(config)}])
        real = run_batches(make_session(q.build(config, resolved=True), level="disable"), batch)
        np.testing.assert_allclose(simulated, real, rtol=1e-5, atol=1e-5 * float(np.abs(real).max()))
    assert covered >= 10, f"only {covered} configs were covered: the test shows little"


def test_a_float_candidate_passes_through_unchanged():
    q, feed = _tiny("conv_mlp")
    sim = Simulator(q)
    batch = {"x": feed["x"][:16]}
    simulated = run_batches(sim.session, [{**batch, **sim.feed(q.resolve(QuantConfig()))}])
    np.testing.assert_allclose(simulated, run_batches(make_session(q.model.proto), [batch]), rtol=1e-5, atol=1e-5)


def test_dynamic_activations_are_left_to_the_qdq_model():
    q, _ = _tiny("conv_mlp")
    sim = Simulator(q)
    dynamic = q.resolve(uniform_config(q.layers, LayerConfig(w_bits=8, act=ActMode.DYNAMIC)))
    static = q.resolve(uniform_config(q.layers, LayerConfig(w_bits=8, act=ActMode.STATIC)))
    assert not sim.covers(dynamic) and sim.covers(static)


def test_screening_on_the_simulator_finishes_on_the_candidates_own_models():
    """digits is small, so a screening search simulates by default; its front carries
    measurements of each point's own QDQ model, equal to plain evaluations."""
    problem = get_problem("digits", staging=Staging(finish="end"))
    assert problem.simulator is not None
    result = minimize(problem, pop_size=12, n_gen=3, seed=0)
    records = list(problem.store.records())
    screened = [r for r in records if r.stage is not None and r.stage.kind == "screen"]
    assert screened and all(r.screen.simulated for r in screened)
    assert all(r.timings.build_s == 0 and r.timings.feed_s > 0 for r in screened)
    finished = [r for r in records if r.ok and r.final]
    assert finished and all(r.reused == 0 for r in finished), "a finish reused simulated outputs"
    plain = get_problem("digits")
    for record in result.front[:3]:
        config = QuantConfig.from_dict(record.config)
        assert plain.evaluate_config(config).objectives["acc_drop"] == record.objectives["acc_drop"]


def test_who_screens_on_the_simulator(monkeypatch):
    assert get_problem("digits", staging=Staging(finish="end", simulate=False)).simulator is None
    assert get_problem("digits", staging=Staging(finish="race", simulate=True)).simulator is None  # no screening
    assert get_problem("digits", staging=Staging(finish="end", simulate=True),
                       objectives=("acc_drop", "host_latency_ms")).simulator is None
    monkeypatch.setattr(screening, "SIMULATE_BELOW_MACS", 1.0)  # a first stage too costly to simulate
    assert get_problem("digits", staging=Staging(finish="end")).simulator is None
    assert get_problem("digits", staging=Staging(finish="end", simulate=True)).simulator is not None
    with pytest.raises(ValueError, match="simulate"):
        Staging(simulate="yes")


def test_a_model_the_simulator_cannot_run(monkeypatch):
    """auto falls back to the candidates' own models; asked for explicitly, a clear error
    before any candidate is evaluated."""
    def broken(self):
        raise RuntimeError("no such op")

    monkeypatch.setattr(Simulator, "_graph", broken)
    problem = get_problem("digits", staging=Staging(finish="end"))
    assert problem.simulator is None
    minimize(problem, pop_size=6, n_gen=1, seed=0)
    assert all(r.ok for r in problem.store.records())
    explicit = get_problem("digits", staging=Staging(finish="end", simulate=True))
    with pytest.raises(ConfigError, match="simulator cannot run this model.*no such op"):
        minimize(explicit, pop_size=6, n_gen=1, seed=0)
    assert len(explicit.store) == 0
