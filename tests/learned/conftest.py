"""Every learned-rounding test runs PyTorch on one thread (the machine is shared; results
do not depend on it); the digits model and its calibrated quantizer, and block-rounding
configs of it, shared by the tests here."""
import pytest

from qaev.config import LayerConfig, QuantConfig
from qaev.data import digits_model_path, load_digits_split
from qaev.model.graph import load_model
from qaev.quantize import Quantizer, uniform_config

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """The digits model and a quantizer calibrated on its calibration split (nothing kept on disk)."""
    model = load_model(digits_model_path())
    return model, Quantizer.calibrated(model, load_digits_split("calib"), persist=False)


def block_config(quantizer, **settings) -> QuantConfig:
    """Every layer of ``quantizer``'s model with ``block`` rounding and ``settings``, resolved."""
    return quantizer.resolve(uniform_config(quantizer.layers, LayerConfig(rounding="block", **settings)))
