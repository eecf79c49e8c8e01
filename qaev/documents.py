"""Reading YAML and JSON documents a user hands qaev, with limits: size, nesting depth and
node count (an alias bomb counts every repeat), and no duplicate keys. Whatever is wrong is
one :class:`~qaev.errors.ConfigError` naming the file, never a traceback or a hang."""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from qaev.errors import ConfigError

__all__ = ["read_document", "parse_document", "MAX_DOCUMENT_BYTES", "MAX_DEPTH", "MAX_NODES"]

#: Largest document read (a config of a large model with its calibrated ranges is < 1 MB).
MAX_DOCUMENT_BYTES = 16 * 1024**2
#: Deepest nesting of mappings and lists (qaev's own documents go 5 deep).
MAX_DEPTH = 32
#: Most values in one document, repeats of YAML aliases included.
MAX_NODES = 1_000_000


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe YAML loading that refuses a mapping with the same key twice (parsed by libyaml
    where PyYAML has it: about 20x faster on a config of a few hundred layers; libyaml
    refuses nesting past 1,000 levels itself)."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: the safe constructor says so below
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _unique_pairs(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _check_shape(data, where: str) -> None:
    """Depth and node count, walked without recursion and stopped at the first excess."""
    stack, nodes = [(data, 1)], 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise ConfigError(f"{where}: more than {MAX_NODES} values (YAML aliases count every repeat)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


def parse_document(text: str, *, where: str, fmt: str = "yaml"):
    """``text`` parsed as ``yaml`` or ``json`` within the limits of this module.

    Raises:
        ConfigError: over a limit, a duplicate key, or not valid YAML/JSON.
    """
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_DOCUMENT_BYTES // 1024**2} MiB")
    name = "JSON" if fmt == "json" else "YAML"
    try:
        data = (json.loads(text, object_pairs_hook=_unique_pairs) if fmt == "json"
                else yaml.load(text, Loader=_UniqueKeyLoader))  # a SafeLoader subclass: safe
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read") from None
    except (ValueError, yaml.YAMLError) as exc:  # JSONDecodeError is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = " ".join(str(exc).split()) if "duplicate key" in str(exc) else first
        raise ConfigError(f"{where}: not valid {name} ({detail})") from None
    _check_shape(data, where)
    return data


def read_document(path: str | os.PathLike, *, what: str, fmt: str | None = None):
    """The document in ``path`` (JSON for ``.json``, else YAML, unless ``fmt`` says).

    Raises:
        ConfigError: missing, unreadable, not text, or see :func:`parse_document`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what} file")
    try:
        if path.stat().st_size > MAX_DOCUMENT_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_DOCUMENT_BYTES // 1024**2} MiB; not a {what} file")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; not a {what} file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    fmt = fmt or ("json" if path.suffix.lower() == ".json" else "yaml")
    return parse_document(text, where=str(path), fmt=fmt)
