"""Hardware cost tables and analytic cost estimates (``qaev.hardware``).

Every latency and energy figure produced here is an estimate from a YAML table of
sourced coefficients (see ``hardware/README.md``); sizes are exact bit counts.
"""
from __future__ import annotations

from qaev.hardware.cost import CostReport, LayerCost, estimate
from qaev.hardware.legality import legal_pairs, repair
from qaev.hardware.pairs import A_TOKENS, W_TOKENS, Pair
from qaev.hardware.activations import activation_elements
from qaev.hardware.table import HardwareTable, Quantity, list_tables, load_table

__all__ = [
    "A_TOKENS",
    "W_TOKENS",
    "CostReport",
    "HardwareTable",
    "LayerCost",
    "Pair",
    "Quantity",
    "activation_elements",
    "estimate",
    "legal_pairs",
    "list_tables",
    "load_table",
    "repair",
]
