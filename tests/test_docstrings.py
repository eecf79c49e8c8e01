"""The runnable examples in the public API's docstrings run and print what they claim."""
import doctest
import importlib

import pytest

MODULES = [
    "qaev.search.problem",      # QuantizationProblem
    "qaev.search.optimize",     # minimize
    "qaev.problems",            # get_problem
    "qaev.config_io",           # save_config / load_config
    "qaev.model.graph",         # load_model
    "qaev.quantize.quantizer",  # Quantizer
    "qaev.cli.progress",        # make_progress
    "qaev.interop_ort",         # to_tensor_quant_overrides
    "qaev.quantize.learned.torch_graph",  # TorchGraph (needs torch, a test dependency)
    "qaev.runtime.summary",     # summary
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0, f"{name} has no docstring example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
