"""Reading and writing configs as YAML or JSON (the only place files meet configs)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from qaev.files import write_atomic
from qaev.config import QuantConfig
from qaev.errors import ConfigError

__all__ = ["load_config", "save_config", "dumps_config"]


def _is_json(path: Path) -> bool:
    return path.suffix.lower() == ".json"


def dumps_config(config: QuantConfig, *, fmt: str = "yaml") -> str:
    """Serialise ``config`` as ``yaml`` or ``json`` text."""
    data = config.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)


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


def load_config(path: str | os.PathLike) -> QuantConfig:
    """Read and validate a config file (safe YAML, or JSON).

    Raises:
        ConfigError: the file is missing or unreadable, or a key or value is invalid;
            the message names the file and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        text = path.read_text()
        data = json.loads(text) if _is_json(path) else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid {'JSON' if _is_json(path) else 'YAML'} ({first})") from None
    try:
        return QuantConfig.from_dict(data, where=path.name)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
