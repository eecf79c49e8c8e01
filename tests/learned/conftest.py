"""Every learned-rounding test runs PyTorch on one thread (the machine is shared; results
do not depend on it)."""
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
