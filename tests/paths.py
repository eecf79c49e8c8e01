"""Where the tests find the shared real data."""
import pathlib

from qaev.data.locate import find_data_root


def shared_data() -> pathlib.Path | None:
    """``$QAEV_DATA``, else the first ``shared/data`` beside a folder above this file."""
    return find_data_root(pathlib.Path(__file__).parent)
