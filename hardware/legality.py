"""What a target can represent, and the repair the search applies to illegal genes.

A pair is *legal* on a table when it is native or matches one of the table's ``legal``
patterns (a target may store a format it does not run fast, e.g. INT4 weights on ORT CPU
that execute as float). :func:`repair` walks the table's fallback chain from the pair a
layer asks for and stops at the first legal pair. Fallbacks only ever widen a precision,
so this is the nearest representable pair at or above the request (3-bit weights on a
target without them become 4-bit, not 2-bit).
"""
from __future__ import annotations

from qaev.config import ActMode, LayerConfig, Rounding
from qaev.hardware.pairs import Pair, all_pairs
from qaev.hardware.table import HardwareTable
from qaev.model.layers import LayerInfo

__all__ = ["legal_pairs", "repair"]


def legal_pairs(table: HardwareTable) -> frozenset[str]:
    """Keys of every concrete pair the target can represent (native ones included)."""
    return frozenset(str(p) for p in all_pairs() if table.is_legal(p))


def repair(layer_cfg: LayerConfig, layer: LayerInfo, table: HardwareTable) -> LayerConfig:
    """Map ``layer_cfg`` to the nearest config the target can represent.

    Only the genes that form the pair change (``w_bits``, ``act``, ``a_bits``);
    granularity and symmetry are kept, and the rounding unless it cannot store the new
    width (a 2-bit codebook widened rounds to nearest). A ``Gather`` only has its weight width repaired
    and an activation-only ``MatMulAct`` only its activation.

    Args:
        layer_cfg: the config the search proposed.
        layer: the layer it applies to.
        table: the target.

    Returns:
        ``layer_cfg`` itself when legal, otherwise a repaired copy.
    """
    wanted = Pair.of(layer_cfg, layer)
    target = next(p for p in table.resolve(wanted) if table.is_legal(p))
    if target == wanted:
        return layer_cfg
    changes = {}
    if layer.has_weight:
        changes["w_bits"] = target.w_bits
    if layer.supports_activations:
        if target.a == "float":
            changes["act"] = ActMode.FLOAT
        elif target.a == "dyn8":
            changes["act"] = ActMode.DYNAMIC
        else:
            changes.update(act=ActMode.STATIC, a_bits=int(target.a))
    if layer.has_weight and changes.get("act", layer_cfg.act) is ActMode.DYNAMIC:
        bits = changes.get("w_bits", layer_cfg.w_bits)
        if bits is None or bits > 8:  # only reachable for Gather-like corner cases
            changes["act"] = ActMode.FLOAT
    if not layer_cfg.stores(changes.get("w_bits", layer_cfg.w_bits)):
        changes["rounding"] = Rounding.NEAREST  # a one-width table method (2-bit codebook) widened: round instead
    return LayerConfig(**{**layer_cfg.to_dict(), **changes})
