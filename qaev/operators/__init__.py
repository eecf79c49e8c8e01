"""pymoo operators that know the structure of a quantization genome."""
from qaev.operators.crossover import BitAverageCrossover, LayerCrossover, LayerTwoPointCrossover, LayerUniformCrossover
from qaev.operators.duplicates import EffectiveDuplicateElimination
from qaev.operators.mutation import NeighbourMutation
from qaev.operators.repair import HardwareRepair
from qaev.operators.sampling import QuantSampling

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
