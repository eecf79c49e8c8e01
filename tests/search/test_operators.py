"""Operators as properties: bounds, legality, whole-layer inheritance, neighbour steps."""
import numpy as np
import pytest

from qaev.config import ACT_SETTINGS, ActMode, Granularity, act_name
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.evaluation.evaluator import Evaluator
from qaev.model.graph import load_model
from qaev.hardware import load_table, repair
from qaev.search.operators import (
    BitAverageCrossover,
    EffectiveDuplicateElimination,
    HardwareRepair,
    LayerCrossover,
    LayerTwoPointCrossover,
    LayerUniformCrossover,
    NeighbourMutation,
    QuantSampling,
)
from qaev.search.problem import QuantizationProblem
from qaev.quantize import Quantizer
from qaev.search.space import SearchSpace
from tests.models import conv_mlp, images


@pytest.fixture(scope="module")
def problem():
    model = load_model(conv_mlp())
    data = ArrayDataset(inputs={"x": images(32)}, name="rand")
    q = Quantizer.calibrated(model, data, persist=False)
    space = SearchSpace(layers=q.layers, w_bits=(2, 3, 4, 6, 8, 16, None), acts=("a4", "a8", "dyn8", "a16", "float"),
                        granularities=tuple(Granularity), symmetric=(True, False))
    return QuantizationProblem(q, Evaluator(model, data, metric="agreement"), space=space)


def _random(problem, n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, problem.space.upper() + 1, size=(n, problem.n_var))


def test_sampling_in_bounds_with_uniform_anchors(problem):
    X = QuantSampling().do(problem, 12, random_state=np.random.default_rng(0)).get("X").astype(int)
    assert X.shape == (12, problem.n_var)
    assert (X >= 0).all() and (X <= problem.space.upper()).all()
    w8a8 = problem.space.decode(problem.space.encode_uniform(w_bits=8, act="a8"))
    w4a8 = problem.space.decode(problem.space.encode_uniform(w_bits=4, act="a8"))
    dyn8 = problem.space.decode(problem.space.encode_uniform(w_bits=8, act="dyn8"))
    keys = {problem.space.key(x) for x in X}
    assert w8a8.key() in keys and w4a8.key() in keys and dyn8.key() in keys


def test_dynamic_anchor_only_where_the_space_allows_it(problem):
    """A space without dynamic int8 seeds no stand-in for it (the uniform rows it had
    before, in the same order); one with it gets the row after the others."""
    narrow = QuantizationProblem(problem.quantizer, problem.evaluator,
                                 space=SearchSpace(layers=problem.quantizer.layers, w_bits=(4, 8),
                                                   acts=("a8", "float")))
    X = QuantSampling(informed=0.0)._do(narrow, 6, random_state=np.random.default_rng(0))
    expected = [narrow.space.encode_uniform(w_bits=b, act=a)
                for b, a in ((8, "a8"), (4, "a8"), (8, "float"), (4, "float"))]
    assert np.array_equal(X[:4], np.array(expected))
    X = QuantSampling(informed=0.0)._do(problem, 6, random_state=np.random.default_rng(0))
    assert np.array_equal(X[4], problem.space.encode_uniform(w_bits=8, act="dyn8"))


@pytest.mark.parametrize("level", [0, 4])
def test_a_block_wise_weight_only_anchor_where_candidates_run_matmulnbits(problem, level):
    space = SearchSpace(layers=problem.quantizer.layers, w_bits=(2, 4, 8), acts=("dyn8", "float"),
                        granularities=(Granularity.PER_CHANNEL, Granularity("block32")), nbits_accuracy=level)
    wide = QuantizationProblem(problem.quantizer, problem.evaluator, space=space)
    X = QuantSampling(informed=0.0)._do(wide, 12, random_state=np.random.default_rng(0))
    fused = space.encode_uniform(w_bits=4, act="float", granularity=Granularity("block32"))
    assert any(np.array_equal(x, fused) for x in X) == (level > 0)
    genome, block = space.genome, space.granularities.index(Granularity("block32"))
    assert (fused[genome.column("granularity")] == block).all()
    assert {(c.w_bits, c.act) for c in space.decode(fused).layers.values()} == {(4, ActMode.FLOAT)}


def test_activation_names_round_trip_through_the_space(problem):
    """Each short name decodes to its (mode, bits) setting and is named back the same way;
    the sensitivity probes and the report use the same names."""
    from qaev.report.gather import act_label
    from qaev.search.width_rows import allowed_acts

    assert allowed_acts(problem.space) == list(ACT_SETTINGS)
    for name, (mode, bits) in ACT_SETTINGS.items():
        config = problem.space.decode(problem.space.encode_uniform(w_bits=8, act=name))
        layers = [c for c in config.layers.values() if c is not None and act_label(c) == name]
        assert layers, name  # some layer takes the setting (dynamic int8 fits only some op types)
        for layer in layers:
            assert (layer.act, act_name(layer.act, layer.a_bits)) == (mode, name)
            assert mode is ActMode.FLOAT or layer.a_bits == bits
    with pytest.raises(ConfigError, match="'a32' is not one of a4, a8, dyn8, a16, float"):
        SearchSpace(layers=problem.quantizer.layers, acts=("a8", "a32"))


@pytest.mark.parametrize("op", [LayerUniformCrossover(), LayerTwoPointCrossover(), LayerCrossover()])
def test_crossover_children_only_mix_whole_parent_layers(problem, op):
    parents = np.stack([_random(problem, 30, 1), _random(problem, 30, 2)])
    children = op._do(problem, parents, random_state=np.random.default_rng(3))
    n_layers = len(problem.space.searchable)
    for k in range(2):
        for m in range(30):
            for i in range(n_layers):
                block = problem.space.genome.layer(i)
                child = children[k, m, block]
                if isinstance(op, LayerCrossover):  # may average bits: other genes still whole-layer
                    child = child[1:]
                    a, b = parents[0, m, block][1:], parents[1, m, block][1:]
                else:
                    a, b = parents[0, m, block], parents[1, m, block]
                assert np.array_equal(child, a) or np.array_equal(child, b)


def test_bit_average_lies_between_parents(problem):
    parents = np.stack([_random(problem, 40, 4), _random(problem, 40, 5)])
    children = BitAverageCrossover()._do(problem, parents, random_state=np.random.default_rng(6))
    w = problem.space.genome.column("w_bits")
    low = np.minimum(parents[0][:, w], parents[1][:, w])
    high = np.maximum(parents[0][:, w], parents[1][:, w])
    for child in children:
        assert (child[:, w] >= low).all() and (child[:, w] <= high).all()


def test_mutation_steps_bits_to_neighbours(problem):
    X = _random(problem, 200, 7)
    Y = NeighbourMutation(rate=0.5)._do(problem, X, random_state=np.random.default_rng(8))
    assert (Y >= 0).all() and (Y <= problem.space.upper()).all()
    genome = problem.space.genome
    stepped = np.concatenate([genome.column("w_bits"), genome.column("act")])  # the ordinal genes
    diff = np.abs(Y[:, stepped] - X[:, stepped])
    assert diff.max() == 1 and (diff > 0).any()
    assert (Y != X).any(axis=1).mean() > 0.5


def test_mutation_rate_adapts_within_bounds(problem):
    op = NeighbourMutation()

    class Algo:
        opt = None

    rates = []
    for _ in range(20):
        rates.append(op._adapt(len(problem.space.searchable), Algo()))
    n = len(problem.space.searchable)
    assert all(1 / n <= r <= 0.5 for r in rates)


def test_repair_makes_every_candidate_legal(problem):
    table = load_table("qualcomm_hexagon")
    problem.table = table
    try:
        X = HardwareRepair()._do(problem, _random(problem, 50, 9))
        for x in X:
            config = problem.space.decode(x)
            for layer in problem.space.searchable:
                cfg = config.layers.get(layer.name)
                if cfg is not None:
                    assert repair(cfg, layer, table) == cfg, (layer.name, cfg)
    finally:
        problem.table = None


def test_duplicates_are_judged_on_the_effective_config(problem):
    from pymoo.core.population import Population

    space = problem.space
    c = space.encode_uniform(w_bits=16, act="float")  # 16-bit weights ignore granularity and symmetry
    d = c.copy()
    d[2] = (d[2] + 1) % (space.upper()[2] + 1)
    d[3] = 1 - d[3]
    e = c.copy()
    e[0] -= 1  # 8-bit weights: a real difference
    pop = Population.new(X=np.array([c, d, e]))
    dup = EffectiveDuplicateElimination(space)._do(pop, None, np.zeros(3, bool))
    assert dup.tolist() == [False, True, False]
