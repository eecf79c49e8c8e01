"""The baselines on digits at small budgets, and their solvers on synthetic inputs."""
import itertools

import numpy as np
import onnx
import pytest

from qaev.baselines import (BudgetExhausted, EvaluationBudget, greedy_baseline, greedy_path, ilp_baseline,
                            ort_baseline, random_baseline, solve_allocation, uniform_baseline)
from qaev.sensitivity.layer_costs import layer_costs
from qaev.config import ActMode, Granularity, LayerConfig
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.search.problem import QuantizationProblem
from qaev.problems import get_problem, problem_parts
from qaev.quantize import Quantizer, uniform_config
from tests.models import conv_mlp, images


def _digits(**kw):
    return get_problem("digits", eval=150, **kw)


def test_budget_counts_distinct_configs_and_refuses_past_the_limit():
    problem = _digits()
    budget = EvaluationBudget(problem, 2)
    a = problem.space.decode(problem.space.encode_uniform(w_bits=8, act="a8"))
    b = problem.space.decode(problem.space.encode_uniform(w_bits=4, act="a8"))
    c = problem.space.decode(problem.space.encode_uniform(w_bits=2, act="a8"))
    budget.evaluate(a), budget.evaluate(a), budget.evaluate(b)
    assert budget.used == 2 and budget.remaining == 0 and budget.seen(a)
    budget.evaluate(b)  # seen: free
    with pytest.raises(BudgetExhausted):
        budget.evaluate(c)


def test_uniform_w8a8_equals_a_direct_build_and_measure():
    problem = _digits()
    result = uniform_baseline(problem)
    assert [p.label for p in result.points] == ["W8A8", "W4A8", "W8 weight-only", "W4 weight-only"]
    assert result.evaluations == 4
    cfg = uniform_config(problem.quantizer.layers, LayerConfig(w_bits=8, act=ActMode.STATIC, a_bits=8,
                                                               granularity=Granularity.PER_CHANNEL))
    direct = problem.evaluator.measure(problem.quantizer.build(cfg)).value
    assert result.points[0].metric == direct
    sizes = {p.label: p.objectives["size_mb"] for p in result.points}
    assert sizes["W4A8"] < 0.6 * sizes["W8A8"]
    short = uniform_baseline(_digits(), budget=2)
    assert short.evaluations == 2 and len(short.points) == 2 and short.notes


def test_greedy_path_on_synthetic_sensitivities():
    # widths (2, 4, 8): layer 0 is fragile at 2 bits, layer 1 is not; equal costs.
    sens = np.array([[9.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    costs = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])
    path = [tuple(int(j) for j in p) for p in greedy_path(sens, costs)]
    # free steps first (ties go to the lower index), then the robust layer reaches 2 bits first
    assert path == [(2, 2), (1, 2), (1, 1), (1, 0), (0, 0)]
    stuck = greedy_path(sens, np.array([[1.0, 2.0, 2.0], [1.0, 2.0, 4.0]]))  # layer 0's first step saves nothing
    assert [int(p[0]) for p in stuck] == [2] * len(stuck) and stuck[-1][1] == 0


def test_greedy_path_is_monotone_and_in_budget():
    problem = _digits()
    result = greedy_baseline(problem, budget=30)
    assert result.evaluations <= 30 and problem.n_evaluated <= 30
    steps = [p.extra["step"] for p in result.points]
    assert steps == sorted(steps) and steps[0] == 0
    sizes = [p.objectives["size_mb"] for p in result.points]
    assert all(a > b for a, b in zip(sizes, sizes[1:]))
    assert set(result.points[0].extra["w_bits"]) == {8} and set(result.points[-1].extra["w_bits"]) == {2}
    for a, b in zip(result.points, result.points[1:]):  # each step lowers, never raises
        assert all(x >= y for x, y in zip(a.extra["w_bits"], b.extra["w_bits"]))


def test_greedy_with_a_small_budget_probes_fewer_layers():
    result = greedy_baseline(_digits(), budget=8)
    assert result.evaluations <= 8 and any("probed" in n for n in result.notes)
    assert len(result.points) >= 2
    with pytest.raises(ConfigError, match="not allowed"):
        greedy_baseline(_digits(), budget=8, act="a16")


def test_allocation_is_the_exact_knapsack_optimum():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores, costs = rng.uniform(0, 5, (4, 3)), rng.uniform(1, 4, (4, 3))
        limit = float(rng.uniform(costs.min(1).sum(), costs.max(1).sum()))
        best = min((sum(scores[i, j] for i, j in enumerate(c)), c) for c in itertools.product(range(3), repeat=4)
                   if sum(costs[i, j] for i, j in enumerate(c)) <= limit)
        choice = solve_allocation(scores, costs, limit)
        assert sum(scores[i, j] for i, j in enumerate(choice)) == pytest.approx(best[0])
    assert solve_allocation(scores, costs, costs.min(1).sum() - 1.0) is None


def test_ilp_respects_every_budget_and_the_evaluation_budget():
    problem = _digits()
    result = ilp_baseline(problem, budget=30)
    assert result.evaluations <= 30 and len(result.points) >= 4
    n_set = len(problem.evaluator.data)
    sqnr = len(problem.space.w_bits) * len(problem.space.searchable) * 32 / n_set  # every layer fits this budget
    assert result.passes == pytest.approx(problem.n_evaluated + sqnr), "SQNR inferences are charged"
    assert result.evaluations == problem.n_evaluated + int(np.ceil(sqnr)) and result.passes <= 30
    offsets = []
    for p in result.points:
        assert p.extra["predicted_cost"] <= p.extra["limit"] * (1 + 1e-9)
        offsets.append(p.objectives["size_mb"] - p.extra["predicted_cost"])
    assert np.ptp(offsets) < 1e-9  # the program's size is the exact size, up to the fixed non-layer bytes
    assert len({p.key for p in result.points}) == len(result.points)


def test_latency_costs_need_a_table_and_come_from_it():
    with pytest.raises(Exception, match="hardware"):
        layer_costs(_digits(), cost="est_latency_ms")
    costs = layer_costs(_digits(hardware="arm_dot"), cost="est_latency_ms")
    assert costs.shape == (5, 3) and (costs > 0).all()


def test_random_search_honours_the_budget_and_its_seed():
    a = random_baseline(_digits(), budget=25, seed=3)
    assert a.evaluations == 25 and len({p.key for p in a.points}) == 25
    assert [p.key for p in random_baseline(_digits(), budget=25, seed=3).points] == [p.key for p in a.points]
    assert [p.key for p in random_baseline(_digits(), budget=25, seed=4).points] != [p.key for p in a.points]


def test_ort_tools_on_digits():
    problem = _digits()
    result = ort_baseline(problem, problem_parts("digits").calib)
    by = {p.label: p for p in result.points}
    assert set(by) == {"quantize_static", "quantize_dynamic"} and result.evaluations == 2
    assert any("no MatMul" in n for n in result.notes)
    float_mb = problem.float_objectives()["size_mb"]
    for p in by.values():
        assert p.ok and p.config is None and p.model
        assert p.objectives["acc_drop"] < 1.5 and p.objectives["size_mb"] < 0.3 * float_mb
        assert p.metric == problem.evaluator.measure(p.model).value


def test_ort_matmul_nbits_runs_where_there_is_a_matmul(tmp_path):
    pytest.importorskip("onnx_ir", reason="ORT's MatMulNBitsQuantizer imports onnx_ir")
    path = tmp_path / "conv_mlp.onnx"
    onnx.save(conv_mlp(), str(path))
    model = load_model(path)
    calib, data = ArrayDataset({"x": images(32, seed=1)}), ArrayDataset({"x": images(64, seed=2)})
    problem = QuantizationProblem(Quantizer.calibrated(model, calib, persist=False),
                                  Evaluator(model, data, metric="sqnr_db"))
    result = ort_baseline(problem, calib, tools=["matmul_nbits4"])
    (point,) = result.points
    assert point.ok, point.error
    assert any(n.op_type == "MatMulNBits" for n in onnx.load_model_from_string(point.model).graph.node)
    assert point.metric > 15.0  # 4-bit block-32 weights keep the output close (dB)
