"""Where the tests find the shared real data."""
import os
import pathlib


def shared_data() -> pathlib.Path | None:
    """``$QAEV_DATA``, else the first ``shared/data`` beside a folder above this file."""
    if os.environ.get("QAEV_DATA"):
        return pathlib.Path(os.environ["QAEV_DATA"])
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None
