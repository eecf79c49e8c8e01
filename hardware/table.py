"""Hardware cost tables: YAML files with a unit and a source beside every number.

The schema is documented in ``hardware/README.md``. :func:`load_table` validates a file
completely (unknown keys, units, fallback chains) and returns a frozen
:class:`HardwareTable`; a malformed file raises :class:`~qaev.errors.ConfigError` naming
the file and the field path, e.g. ``arm_neon.yaml: peak_macs_per_s.w8a8: missing unit``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Mapping


from qaev.documents import parse_document
from qaev.errors import ConfigError
from qaev.hardware.pairs import FLOAT_PAIR, Pair, all_pairs

__all__ = ["Quantity", "NbitsKernel", "HardwareTable", "load_table", "list_tables", "MAX_HOPS", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
#: Longest fallback chain a table may use to reach a native pair.
MAX_HOPS = 4

# field -> (unit, strictly positive)
_SCALARS = {
    "memory_bandwidth": ("B/s", True),
    "energy_per_byte": ("pJ/B", False),
    "layer_overhead": ("s", False),
    "act_conversion_time": ("s/element", False),
    "act_conversion_energy": ("pJ/element", False),
    "weight_conversion_time": ("s/element", False),
    "weight_conversion_energy": ("pJ/element", False),
}
_PER_PAIR = {"peak_macs_per_s": ("MAC/s", True), "energy_per_mac": ("pJ/MAC", False)}
_TEXT = ("name", "description", "device")
_CHOICES = {"kind": ("estimate",), "float_format": ("fp32", "fp16"), "weight_decompression": ("runtime", "load")}
_REQUIRED = {"version", *_TEXT, *_CHOICES, *_PER_PAIR, "fallback", *_SCALARS}
_OPTIONAL = {"legal", "nbits_kernel", "op_notes", "notes"}


@dataclass(frozen=True)
class Quantity:
    """One sourced number.

    Attributes:
        value: the number, in ``unit``.
        unit: the unit, exactly as the schema names it (no conversion is done).
        source: datasheet, paper or measurement it comes from.
    """

    value: float
    unit: str
    source: str


@dataclass(frozen=True, kw_only=True)
class NbitsKernel:
    """A fused low-bit weight-only MatMul kernel (ONNX Runtime's ``MatMulNBits``): block-wise
    integer weights read at their stored width and unpacked in registers, no dequantization
    pass over the weight.

    Attributes:
        max_bits: widest weight it takes.
        peak_macs_per_s, energy_per_mac: its rate and energy per MAC.
    """

    max_bits: int
    peak_macs_per_s: Quantity
    energy_per_mac: Quantity


@dataclass(frozen=True, kw_only=True, eq=False)
class HardwareTable:
    """A validated hardware cost table (every figure an estimate).

    Attributes:
        name, description, device: what the table models.
        kind: always ``"estimate"``.
        float_format: ``fp32`` or ``fp16``: what a float op computes and moves.
        weight_decompression: ``runtime`` (integer weights executed as float are read at
            their stored width and dequantized every run) or ``load`` (dequantized once when
            the model is compiled, then read at the float width).
        peak_macs_per_s, energy_per_mac: per native pair key (``w8a8``...).
        fallback: pair or pattern key -> the pair it runs as (see :meth:`resolve`).
        legal: patterns of the pairs the target can represent (native ones always are).
        memory_bandwidth, energy_per_byte, layer_overhead, act_conversion_time,
            act_conversion_energy, weight_conversion_time, weight_conversion_energy: scalars.
        op_notes, notes: free text shown by ``qaev hardware show``.
        path: where the table was read from.
        nbits_kernel: the fused block-wise weight-only MatMul kernel, where the target has
            one (None: such layers run as their pair's fallback).
    """

    name: str
    description: str
    device: str
    kind: str
    float_format: str
    weight_decompression: str
    peak_macs_per_s: Mapping[str, Quantity]
    energy_per_mac: Mapping[str, Quantity]
    fallback: Mapping[str, str]
    legal: tuple[str, ...]
    memory_bandwidth: Quantity
    energy_per_byte: Quantity
    layer_overhead: Quantity
    act_conversion_time: Quantity
    act_conversion_energy: Quantity
    weight_conversion_time: Quantity
    weight_conversion_energy: Quantity
    op_notes: Mapping[str, str]
    notes: tuple[str, ...]
    path: str
    nbits_kernel: NbitsKernel | None = None

    @property
    def float_bytes(self) -> int:
        """Bytes per float element on this target."""
        return 2 if self.float_format == "fp16" else 4

    def is_native(self, pair: Pair) -> bool:
        """Whether ``pair`` runs natively (has a peak rate)."""
        return str(pair) in self.peak_macs_per_s

    def rate(self, pair: Pair) -> float:
        """Peak MAC/s of a native pair."""
        return self.peak_macs_per_s[str(pair)].value

    def mac_energy(self, pair: Pair) -> float:
        """pJ per MAC of a native pair."""
        return self.energy_per_mac[str(pair)].value

    def step(self, pair: Pair) -> Pair | None:
        """One fallback hop: the exact key first, then ``w*a<A>``, then ``w<W>a*``.

        A ``*`` in the target stands for the token the pattern matched.
        """
        for key, fill in ((str(pair), None), (f"w*a{pair.a}", "w"), (f"w{pair.w}a*", "a")):
            if key in self.fallback:
                target = Pair.parse(self.fallback[key])
                if fill == "w" and target.w == "*":
                    target = Pair(pair.w, target.a)
                elif fill == "a" and target.a == "*":
                    target = Pair(target.w, pair.a)
                return target
        return None

    def resolve(self, pair: Pair) -> tuple[Pair, ...]:
        """The fallback chain from ``pair`` to the native pair it executes as (inclusive)."""
        chain = [pair]
        while not self.is_native(chain[-1]):
            nxt = self.step(chain[-1])
            path = " -> ".join(map(str, chain))
            if nxt is None:
                raise ConfigError(f"{self.path}: fallback: no rule for {path} (and it is not native)")
            if nxt in chain or len(chain) > MAX_HOPS:
                raise ConfigError(f"{self.path}: fallback: {path} -> {nxt} cycles or exceeds {MAX_HOPS} hops")
            if not nxt.valid:
                raise ConfigError(f"{self.path}: fallback: {path} -> {nxt}: no layer can run {nxt}")
            chain.append(nxt)
        return tuple(chain)

    def executed(self, pair: Pair) -> Pair:
        """The native pair ``pair`` runs as."""
        return self.resolve(pair)[-1]

    def is_legal(self, pair: Pair) -> bool:
        """Whether the target can represent ``pair`` (native, or matching a ``legal`` pattern)."""
        return self.is_native(pair) or any(pair.matches(Pair.parse(p)) for p in self.legal)


def _fail(where: str, field: str, problem: str) -> ConfigError:
    return ConfigError(f"{where}: {field}: {problem}")


def _quantity(raw, where: str, field: str, unit: str, positive: bool) -> Quantity:
    if not isinstance(raw, Mapping):
        raise _fail(where, field, "expected a mapping {value, unit, source}")
    unknown = sorted(set(raw) - {"value", "unit", "source"})
    if unknown:
        raise _fail(where, field, f"unknown key(s) {', '.join(map(repr, unknown))}")
    for key in ("value", "unit", "source"):
        if key not in raw:
            raise _fail(where, field, f"missing {key}")
    value = raw["value"]
    if isinstance(value, str):  # PyYAML reads 1e-9 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise _fail(where, f"{field}.value", f"{raw['value']!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"{field}.value", f"{value!r} is not a finite number")
    if value < 0 or (positive and value == 0):
        raise _fail(where, f"{field}.value", f"{value!r} must be {'positive' if positive else 'non-negative'}")
    if raw["unit"] != unit:
        raise _fail(where, f"{field}.unit", f"{raw['unit']!r} should be {unit!r}")
    if not isinstance(raw["source"], str) or not raw["source"].strip():
        raise _fail(where, f"{field}.source", "must be a non-empty string")
    return Quantity(float(value), unit, raw["source"].strip())


def _pair_key(key, where: str, field: str, *, pattern: bool) -> Pair:
    try:
        pair = Pair.parse(key)
    except ValueError as exc:
        raise _fail(where, field, str(exc)) from None
    if pair.is_pattern and not pattern:
        raise _fail(where, field, f"{key!r}: a wildcard is not allowed here")
    return pair


def _per_pair(raw, where: str, field: str, unit: str, positive: bool) -> dict[str, Quantity]:
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(where, field, "expected a non-empty mapping of pair -> {value, unit, source}")
    out = {}
    for key, item in raw.items():
        _pair_key(key, where, f"{field}.{key}", pattern=False)
        out[str(key)] = _quantity(item, where, f"{field}.{key}", unit, positive)
    return out


def _nbits_kernel(raw, where: str) -> NbitsKernel | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise _fail(where, "nbits_kernel", "expected a mapping {max_bits, peak_macs_per_s, energy_per_mac}")
    unknown = sorted(set(raw) - {"max_bits", *_PER_PAIR})
    if unknown:
        raise _fail(where, "nbits_kernel", f"unknown key(s) {', '.join(map(repr, unknown))}")
    bits = raw.get("max_bits")
    if isinstance(bits, bool) or bits not in (2, 3, 4, 6, 8):
        raise _fail(where, "nbits_kernel.max_bits", f"{bits!r} is not one of 2, 3, 4, 6, 8")
    quantities = {}
    for key, (unit, positive) in _PER_PAIR.items():
        if key not in raw:
            raise _fail(where, f"nbits_kernel.{key}", "missing")
        quantities[key] = _quantity(raw[key], where, f"nbits_kernel.{key}", unit, positive)
    return NbitsKernel(max_bits=bits, **quantities)


def _fallback(raw, where: str, native: set[str]) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        raise _fail(where, "fallback", "expected a mapping of pair or pattern -> pair")
    out = {}
    for key, target in raw.items():
        field = f"fallback.{key}"
        src = _pair_key(key, where, field, pattern=True)
        dst = _pair_key(target, where, field, pattern=True)
        if str(src) in native:
            raise _fail(where, field, "a native pair cannot fall back")
        if (dst.w == "*" and src.w != "*") or (dst.a == "*" and src.a != "*"):
            raise _fail(where, field, f"{target!r}: '*' in the target needs '*' at the same place in the key")
        if src.is_pattern and src.w == "*" and src.a == "*":
            raise _fail(where, field, "w*a* would match every pair: list the rules")
        out[str(key)] = str(target)
    return out


def _strings(raw, where: str, field: str, *, mapping: bool):
    kind = Mapping if mapping else list
    if not isinstance(raw, kind):
        raise _fail(where, field, f"expected a {'mapping' if mapping else 'list'} of strings")
    items = raw.items() if mapping else enumerate(raw)
    for key, text in items:
        if not isinstance(text, str):
            raise _fail(where, f"{field}.{key}", "expected a string")
    return MappingProxyType({str(k): v for k, v in raw.items()}) if mapping else tuple(raw)


def _parse(data, where: str) -> HardwareTable:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - _REQUIRED - _OPTIONAL)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise _fail(where, missing[0], "missing")
    if data["version"] != SCHEMA_VERSION:
        raise _fail(where, "version", f"{data['version']!r} is not supported (expected {SCHEMA_VERSION})")
    fields: dict = {"path": where}
    for key in _TEXT:
        if not isinstance(data[key], str) or not data[key].strip():
            raise _fail(where, key, "must be a non-empty string")
        fields[key] = data[key].strip()
    for key, allowed in _CHOICES.items():
        if data[key] not in allowed:
            raise _fail(where, key, f"{data[key]!r} is not one of {', '.join(allowed)}")
        fields[key] = data[key]
    for key, (unit, positive) in _PER_PAIR.items():
        fields[key] = _per_pair(data[key], where, key, unit, positive)
    rates, energies = set(fields["peak_macs_per_s"]), set(fields["energy_per_mac"])
    if rates != energies:
        odd = sorted(rates ^ energies)[0]
        raise _fail(where, f"energy_per_mac.{odd}", "native pairs need both a peak rate and an energy")
    if str(FLOAT_PAIR) not in rates:
        raise _fail(where, f"peak_macs_per_s.{FLOAT_PAIR}", "missing (every target must run float)")
    fields["fallback"] = _fallback(data["fallback"], where, rates)
    for key, (unit, positive) in _SCALARS.items():
        fields[key] = _quantity(data[key], where, key, unit, positive)
    legal = _strings(data.get("legal", []), where, "legal", mapping=False)
    for i, pattern in enumerate(legal):
        _pair_key(pattern, where, f"legal.{i}", pattern=True)
    fields["legal"] = legal
    fields["nbits_kernel"] = _nbits_kernel(data.get("nbits_kernel"), where)
    fields["op_notes"] = _strings(data.get("op_notes", {}), where, "op_notes", mapping=True)
    fields["notes"] = _strings(data.get("notes", []), where, "notes", mapping=False)
    for key in _PER_PAIR:
        fields[key] = MappingProxyType(fields[key])
    fields["fallback"] = MappingProxyType(fields["fallback"])
    table = HardwareTable(**fields)
    for pair in all_pairs():
        table.resolve(pair)  # every pair a config can ask for must reach a native pair
    return table


def list_tables() -> list[str]:
    """Names of the bundled tables."""
    root = resources.files("qaev.hardware")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


@functools.lru_cache(maxsize=None)
def _bundled(name: str) -> HardwareTable:
    text = resources.files("qaev.hardware").joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    return _parse_text(text, f"{name}.yaml")


def _parse_text(text: str, where: str) -> HardwareTable:
    return _parse(parse_document(text, where=where), where)


def load_table(name_or_path: str | Path) -> HardwareTable:
    """Load a bundled table by name (see :func:`list_tables`) or a YAML file by path.

    Raises:
        ConfigError: unknown name, unreadable file, or a malformed table (the message
            names the file and the field path).
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text or "\\" in text:
        path = Path(name_or_path)
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read hardware table: {exc.strerror or exc}") from None
        return _parse_text(content, str(path))
    names = list_tables()
    if text not in names:
        raise ConfigError(f"hardware: unknown target {text!r}; bundled: {', '.join(names)}")
    return _bundled(text)
