"""Precision pairs ``(weight, activation)`` as hardware tables name them.

A pair is written ``w<W>a<A>``: ``<W>`` is one of ``2 3 4 6 8 16 float`` (weight bits or a
float weight) and ``<A>`` one of ``4 8 16 dyn8 float`` (static activation bits, dynamic
int8, or float activations). Examples: ``w8a8``, ``w4a16``, ``w8adyn8``, ``w4afloat``,
``wfloatafloat``. In fallback and legality patterns ``*`` stands for any token.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from qaev.config import ActMode, LayerConfig
from qaev.model.layers import LayerInfo

__all__ = ["W_TOKENS", "A_TOKENS", "Pair", "FLOAT_PAIR", "all_pairs"]

#: Weight tokens, narrowest first ("float" is the widest).
W_TOKENS: tuple[str, ...] = ("2", "3", "4", "6", "8", "16", "float")
#: Activation tokens, narrowest first; ``dyn8`` ranks with static 8 bits.
A_TOKENS: tuple[str, ...] = ("4", "8", "dyn8", "16", "float")
_A_RANK = {"4": 0, "8": 1, "dyn8": 1, "16": 2, "float": 3}
_PATTERN = re.compile(r"^w(2|3|4|6|8|16|float|\*)a(4|8|16|dyn8|float|\*)$")


@dataclass(frozen=True)
class Pair:
    """A ``(weight, activation)`` precision pair, or a pattern when a token is ``*``.

    Attributes:
        w: weight token from :data:`W_TOKENS` (or ``*``).
        a: activation token from :data:`A_TOKENS` (or ``*``).
    """

    w: str
    a: str

    def __str__(self) -> str:
        return f"w{self.w}a{self.a}"

    @classmethod
    def parse(cls, text: object) -> "Pair":
        """Parse ``w<W>a<A>``; raises ValueError on anything else."""
        match = _PATTERN.match(str(text)) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"{text!r} is not a pair like w8a8, w4a16, w8adyn8 or wfloatafloat")
        return cls(match.group(1), match.group(2))

    @property
    def is_pattern(self) -> bool:
        """True when a token is the ``*`` wildcard."""
        return "*" in (self.w, self.a)

    @property
    def valid(self) -> bool:
        """Whether a :class:`~qaev.config.LayerConfig` can ask for it (dynamic needs int <= 8 weights)."""
        return not self.is_pattern and not (self.a == "dyn8" and self.w in ("16", "float"))

    @property
    def w_bits(self) -> int | None:
        """Weight bits, or None for a float weight."""
        return None if self.w == "float" else int(self.w)

    @property
    def a_storage(self) -> str:
        """How the activation tensors are held between ops: ``4``, ``8``, ``16`` or ``float``.

        Dynamic quantization reads and writes float tensors and quantizes inside the op.
        """
        return "float" if self.a in ("dyn8", "float") else self.a

    def at_least(self, other: "Pair") -> bool:
        """True when both tokens are at least as wide as ``other``'s (float is widest)."""
        return W_TOKENS.index(self.w) >= W_TOKENS.index(other.w) and _A_RANK[self.a] >= _A_RANK[other.a]

    def matches(self, pattern: "Pair") -> bool:
        """Whether this concrete pair matches ``pattern`` (``*`` matches any token)."""
        return pattern.w in ("*", self.w) and pattern.a in ("*", self.a)

    @classmethod
    def of(cls, cfg: LayerConfig | None, layer: LayerInfo) -> "Pair":
        """The pair a layer asks for under ``cfg`` (None: float).

        An activation-only ``MatMulAct`` counts its second operand as an 8-bit weight when
        activations are 8 bits or fewer (sub-8-bit values live in int8 containers) and at
        the activation width otherwise. A ``Gather`` has no activation to quantize.
        """
        if cfg is None or cfg.is_float:
            return FLOAT_PAIR
        if layer.op_type == "Gather" or cfg.act is ActMode.FLOAT:
            a = "float"
        elif cfg.act is ActMode.DYNAMIC:
            a = "dyn8"
        else:
            a = str(cfg.a_bits)
        if layer.op_type == "Gather":
            w = "float" if cfg.w_bits is None else str(cfg.w_bits)
        elif not layer.has_weight:
            w = "8" if a in ("4", "8", "dyn8") else a
        else:
            w = "float" if cfg.w_bits is None else str(cfg.w_bits)
        return cls(w, a)


FLOAT_PAIR = Pair("float", "float")


def all_pairs() -> tuple[Pair, ...]:
    """Every concrete pair a :class:`~qaev.config.LayerConfig` can ask for."""
    return tuple(p for w in W_TOKENS for a in A_TOKENS if (p := Pair(w, a)).valid)
