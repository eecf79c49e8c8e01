"""The genome layout: named views agree with each other and with the space's option lists."""
import numpy as np
import pytest

from qaev.search.genome import GLOBAL_GENES, LAYER_GENES, Genome
from qaev.search.space import SearchSpace
from qaev.quantize import Quantizer
from qaev.data import ArrayDataset
from qaev.model.graph import load_model
from tests.models import conv_mlp, images


@pytest.mark.parametrize("n_layers", [1, 3, 226])
def test_every_position_belongs_to_exactly_one_view(n_layers):
    genome = Genome(n_layers)
    seen = np.zeros(genome.n_var, int)
    for i in range(n_layers):
        seen[genome.layer(i)] += 1
        for k, gene in enumerate(LAYER_GENES):
            assert genome.index(i, gene.name) == genome.layer(i).start + k
            assert genome.ordinal(genome.index(i, gene.name)) is gene.ordinal
    seen[genome.globals] += 1
    assert (seen == 1).all()
    for gene in LAYER_GENES:
        assert list(genome.column(gene.name)) == [genome.index(i, gene.name) for i in range(n_layers)]
    for k, gene in enumerate(GLOBAL_GENES):
        assert genome.global_index(gene.name) == genome.globals.start + k


def test_expand_spreads_a_layer_choice_over_its_genes_and_the_global_block():
    genome = Genome(3)
    mask = genome.expand(np.array([[True, False, True]]), np.array([True]))
    assert mask.shape == (1, genome.n_var)
    assert mask[0, genome.layer(0)].all() and not mask[0, genome.layer(1)].any() and mask[0, genome.globals].all()
    assert not genome.expand(np.array([False, False, True]))[genome.globals].any()


def test_the_space_has_one_option_list_per_gene_and_decodes_through_the_views():
    q = Quantizer.calibrated(load_model(conv_mlp()), ArrayDataset(inputs={"x": images(16)}, name="x"), persist=False)
    space = SearchSpace(layers=q.layers, w_bits=(2, 4, 8), roundings=("nearest", "gptq"),
                        calibrations=("minmax", "mse"))
    upper = space.upper()
    for gene in (*LAYER_GENES, *GLOBAL_GENES):
        assert len(space.options(gene.name)) >= 1
    for gene in LAYER_GENES:
        assert set(upper[space.genome.column(gene.name)]) == {len(space.options(gene.name)) - 1}
    row = space.encode_uniform(w_bits=4, act="a8")
    row[space.genome.global_index("calibration")] = 1
    row[space.genome.index(0, "w_bits")] = 0
    config = space.decode(row)
    assert config.calibration.value == "mse"
    assert config.layers[space.searchable[0].name].w_bits == 2
