"""Fixtures shared by the quantization tests."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def own_cache(tmp_path_factory):
    """Codebooks and learned results are kept on disk: keep a module's out of the user's
    cache (``pytestmark = pytest.mark.usefixtures("own_cache")``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QAEV_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield
