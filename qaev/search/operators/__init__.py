"""pymoo operators that know the structure of a quantization genome."""
from qaev.search.operators.crossover import (
    BitAverageCrossover, LayerCrossover, LayerTwoPointCrossover, LayerUniformCrossover,
)
from qaev.search.operators.duplicates import EffectiveDuplicateElimination
from qaev.search.operators.mutation import NeighbourMutation
from qaev.search.operators.repair import HardwareRepair
from qaev.search.operators.sampling import QuantSampling

__all__ = [
    "BitAverageCrossover",
    "EffectiveDuplicateElimination",
    "HardwareRepair",
    "LayerCrossover",
    "LayerTwoPointCrossover",
    "LayerUniformCrossover",
    "NeighbourMutation",
    "QuantSampling",
]
