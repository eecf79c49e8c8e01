"""Codebook (vector-quantized) embedding tables: the lookup graph, export, size, validation."""
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from qaev.quantize.sizes import weight_bytes
from qaev.config import ActMode, Granularity, LayerConfig, QuantConfig, Rounding, ScaleRule, WeightRange
from qaev.data import ArrayDataset
from qaev.errors import ConfigError
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, export_model, uniform_config
from qaev.quantize.codebook import codebook_quantize
from qaev.quantize.weights import quantize_weight
from qaev.model.session import make_session, run_batches
from qaev.search.space import SearchSpace
from tests.models import attention_like

_CODEBOOK = LayerConfig(w_bits=2, act=ActMode.FLOAT, rounding=Rounding.CODEBOOK)


pytestmark = pytest.mark.usefixtures("own_cache")  # codebooks and learned results stay out of the user's cache


@pytest.fixture(scope="module")
def lookup():
    model = load_model(attention_like())
    ids = np.random.default_rng(0).integers(0, 50, (16, 6)).astype(np.int64)
    return Quantizer.calibrated(model, ArrayDataset(inputs={"ids": ids}, name="ids"), persist=False), ids


def _with_table(proto: onnx.ModelProto, name: str, table: np.ndarray) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for init in out.graph.initializer:
        if init.name == name:
            init.CopyFrom(numpy_helper.from_array(table, name))
    return out


def test_the_lookup_graph_computes_the_dequantized_table_exactly(lookup):
    q, ids = lookup
    cfg = QuantConfig(layers={"embed": _CODEBOOK})
    cw = codebook_quantize(q.model.weight("emb"))
    assert cw.codes.dtype == np.uint8 and cw.codes.shape == (50, 16) and cw.vectors.shape == (256, 4)
    feed = [{"ids": ids}]
    built = run_batches(make_session(q.build(cfg)), feed)
    reference = run_batches(make_session(_with_table(q.model.proto, "emb", cw.dequantize())), feed)
    np.testing.assert_array_equal(built, reference)
    exported = export_model(q, cfg)
    np.testing.assert_array_equal(run_batches(make_session(exported), feed), built)
    tables = [i for i in exported.graph.initializer if tuple(i.dims) == (50, 64)]
    assert not tables  # the float table is gone from the shipped file


def test_codebook_errors_less_than_the_best_scalar_two_bit_grid():
    """Same two bits per weight: 256 learned four-weight vectors reconstruct a heavy-tailed
    table with clearly less squared error than 2-bit block-32 asymmetric MSE-clipped scalars."""
    w = np.random.default_rng(0).standard_t(5, size=(4000, 64)).astype(np.float32)
    vq = np.square(codebook_quantize(w).dequantize() - w).sum()
    scalar = quantize_weight(w, bits=2, granularity=Granularity.BLOCK32, symmetric=False, scale_rule=ScaleRule.FLOAT,
                             channel_axis=0, reduce_axis=1, weight_range=WeightRange.MSE)
    assert vq < 0.9 * np.square(scalar.dequantize() - w).sum()


def test_same_seed_same_codebook():
    w = np.random.default_rng(1).normal(size=(300, 32)).astype(np.float32)
    a, b = codebook_quantize(w, seed=3), codebook_quantize(w, seed=3)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.vectors, b.vectors)


def test_codebook_configs_are_validated_by_field_and_layer(lookup):
    q, _ = lookup
    with pytest.raises(ConfigError, match="w_bits must be 2"):
        LayerConfig(w_bits=4, rounding="codebook")
    with pytest.raises(ConfigError, match="proj.*codebook rounding applies to lookups"):
        q.build(QuantConfig(layers={"proj": _CODEBOOK}))
    with pytest.raises(ConfigError, match="codebook"):
        codebook_quantize(np.zeros((10, 6), np.float32))
    grid_genes = LayerConfig(w_bits=2, act=ActMode.FLOAT, rounding="codebook", granularity="block32", symmetric=False)
    assert grid_genes.effective() == _CODEBOOK.effective()  # the grid genes do not apply: one key
    assert LayerConfig.from_dict(_CODEBOOK.to_dict()) == _CODEBOOK


def test_uniform_codebook_configs_fall_back_to_nearest_elsewhere(lookup):
    q, _ = lookup
    cfg = uniform_config(q.layers, _CODEBOOK)
    assert cfg.layers["embed"].rounding is Rounding.CODEBOOK
    assert cfg.layers["proj"].rounding is Rounding.NEAREST


def test_a_codebook_tables_size_counts_codes_scales_and_vectors(lookup):
    q, _ = lookup
    embed = next(layer for layer in q.layers if layer.name == "embed")
    assert weight_bytes(embed, _CODEBOOK) == 50 * 64 * 2 // 8 + 50 * 4 + 256 * 4 * 4
    exported = export_model(q, QuantConfig(layers={"embed": _CODEBOOK}))
    stored = sum(numpy_helper.to_array(i).nbytes for i in exported.graph.initializer if i.name.startswith("embed."))
    assert stored <= weight_bytes(embed, _CODEBOOK) + 8 + 3 * 8  # + the reshape's row width, the Range of rows


def test_the_codebook_gene_applies_to_two_bit_tables_only(lookup):
    q, _ = lookup
    space = SearchSpace(layers=q.layers, w_bits=(2, 4), acts=("float",), roundings=("gptq", "codebook"))
    names = [layer.name for layer in space.searchable]
    e, p = names.index("embed"), names.index("proj")
    seen = {}
    for w in (0, 1):
        for r in (0, 1):
            row = space.encode_uniform(w_bits=2, act="float")
            for i in (e, p):
                row[space.genome.index(i, "w_bits")], row[space.genome.index(i, "rounding")] = w, r
            config = space.decode(row)
            seen[(w, r)] = (config.layers["embed"].rounding, config.layers["proj"].rounding)
    assert seen[(0, 1)] == (Rounding.CODEBOOK, Rounding.GPTQ)  # 2 bits, codebook gene
    assert seen[(0, 0)] == (Rounding.NEAREST, Rounding.GPTQ)   # gptq does not apply to a lookup
    assert seen[(1, 1)] == (Rounding.NEAREST, Rounding.GPTQ)   # 4 bits: no codebook


def test_codebooks_are_kept_on_disk_and_a_corrupt_file_is_recomputed(tmp_path, monkeypatch):
    from qaev.quantize import codebook

    monkeypatch.setenv("QAEV_CACHE", str(tmp_path))
    w = np.random.default_rng(0).standard_t(3, size=(300, 16)).astype(np.float32)
    first = codebook.cached_codebook(w)
    files = list((tmp_path / "codebook").glob("*.npz"))
    assert len(files) == 1
    with monkeypatch.context() as patch:
        patch.setattr(codebook, "codebook_quantize", lambda *a, **k: pytest.fail("recomputed a cached codebook"))
        again = codebook.cached_codebook(w)
    for field in ("codes", "vectors", "scale"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))
    assert codebook.cached_codebook(w, seed=1) is not None and len(list((tmp_path / "codebook").glob("*.npz"))) == 2
    files[0].write_bytes(b"not a zip file")
    np.testing.assert_array_equal(codebook.cached_codebook(w).codes, first.codes)
