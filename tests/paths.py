"""Where the tests find the shared real data."""
import pathlib

from qaev.data.locate import find_data_root


def shared_data() -> pathlib.Path | None:
    """``$QAEV_DATA``, else the first ``shared/data`` beside a folder above this file."""
    return find_data_root(pathlib.Path(__file__).parent)


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (registered in ``sys.modules``, where
    dataclasses look their module up)."""
    import importlib.util
    import sys

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"qaev_bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
