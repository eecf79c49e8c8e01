"""Reading and writing configs as YAML or JSON (the only place files meet configs)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from qaev.files import write_atomic
from qaev.config import LayerConfig, QuantConfig
from qaev.documents import read_document
from qaev.errors import ConfigError

__all__ = ["load_config", "save_config", "dumps_config", "load_layer_settings"]

#: libyaml's dumper where PyYAML was built with it (the same text, about 20x faster on a
#: config of a few hundred layers), else the pure-Python one.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def dumps_config(config: QuantConfig, *, fmt: str = "yaml") -> str:
    """Serialise ``config`` as ``yaml`` or ``json`` text."""
    data = config.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False)


def save_config(config: QuantConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` to ``path`` (JSON for ``.json``, YAML otherwise) atomically.

    Example:
        >>> import tempfile, pathlib
        >>> from qaev.config import QuantConfig
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
        >>> cfg = QuantConfig.uniform(["conv1"], w_bits=4)
        >>> load_config(save_config(cfg, p)) == cfg
        True
    """
    path = Path(path)
    text = dumps_config(config, fmt="json" if _is_json(path) else "yaml")
    return write_atomic(path, text)


def _read(path: Path, what: str):
    return read_document(path, what=what)


def load_layer_settings(path: str | os.PathLike) -> dict[str, LayerConfig]:
    """Read a file mapping layer selectors (names or ``re:<regex>``) to layer settings,
    e.g. ``"re:word_embeddings": {w_bits: 2, act: float, rounding: codebook}``.

    Raises:
        ConfigError: the file is missing or unreadable, not such a mapping, or a setting
            is invalid; the message names the file and the selector.
    """
    path = Path(path)
    data = _read(path, "layer settings")
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path.name}: expected a mapping of layer selector to settings, got {type(data).__name__}")
    return {str(selector): LayerConfig.from_dict(settings, where=f"{path.name}: {selector}")
            for selector, settings in data.items()}


def load_config(path: str | os.PathLike) -> QuantConfig:
    """Read and validate a config file (safe YAML, or JSON).

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is invalid;
            the message names the file and the field.
    """
    path = Path(path)
    data = _read(path, "config")
    try:
        return QuantConfig.from_dict(data, where=path.name)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
