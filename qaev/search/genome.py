"""The layout of a genome: named views onto the integer vector pymoo evolves.

A genome holds, for every searchable layer, one gene per entry of :data:`LAYER_GENES` (in
that order, layer after layer), then the :data:`GLOBAL_GENES`. Each gene is an index into
an ordered option list of the :class:`~qaev.search.space.SearchSpace`; an *ordinal* gene's
neighbouring indices are neighbouring precisions (a mutation steps it by one). Operators,
repair, seeding and host timing reach genes only through :class:`Genome`, so adding a gene
is one entry here and its option list in the space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Gene", "LAYER_GENES", "GLOBAL_GENES", "Genome"]


@dataclass(frozen=True)
class Gene:
    """One gene: its name (the space's option list of the same meaning) and whether
    neighbouring indices are neighbouring precisions."""

    name: str
    ordinal: bool = False


#: Genes every searchable layer owns, in genome order.
LAYER_GENES: tuple[Gene, ...] = (
    Gene("w_bits", ordinal=True),
    Gene("act", ordinal=True),
    Gene("granularity"),
    Gene("symmetric"),
    Gene("rounding"),
    Gene("bias_correction"),
)
#: Genes of the whole model, after the layers'.
GLOBAL_GENES: tuple[Gene, ...] = (Gene("calibration"), Gene("scale_rule"))

_LAYER_INDEX = {g.name: k for k, g in enumerate(LAYER_GENES)}
_GLOBAL_INDEX = {g.name: k for k, g in enumerate(GLOBAL_GENES)}


@dataclass(frozen=True)
class Genome:
    """The layout of a genome of ``n_layers`` searchable layers."""

    n_layers: int

    @property
    def per_layer(self) -> int:
        """Genes per layer."""
        return len(LAYER_GENES)

    @property
    def n_var(self) -> int:
        """Genes in all."""
        return self.per_layer * self.n_layers + len(GLOBAL_GENES)

    def layer(self, i: int) -> slice:
        """The genes of searchable layer ``i``."""
        return slice(self.per_layer * i, self.per_layer * (i + 1))

    def index(self, i: int, gene: str) -> int:
        """Position of layer ``i``'s gene ``gene``."""
        return self.per_layer * i + _LAYER_INDEX[gene]

    def column(self, gene: str) -> np.ndarray:
        """Positions of ``gene`` in every layer, in layer order."""
        return np.arange(self.n_layers) * self.per_layer + _LAYER_INDEX[gene]

    def global_index(self, gene: str) -> int:
        """Position of global gene ``gene``."""
        return self.per_layer * self.n_layers + _GLOBAL_INDEX[gene]

    @property
    def globals(self) -> slice:
        """The global genes."""
        return slice(self.per_layer * self.n_layers, self.n_var)

    def ordinal(self, position: int) -> bool:
        """Whether the gene at ``position`` is ordinal."""
        if position >= self.per_layer * self.n_layers:
            return GLOBAL_GENES[position - self.per_layer * self.n_layers].ordinal
        return LAYER_GENES[position % self.per_layer].ordinal

    def expand(self, layer_mask: np.ndarray, global_mask: np.ndarray | None = None) -> np.ndarray:
        """A gene mask from per-layer choices ``[..., n_layers]`` (every gene of a chosen layer),
        and per-row choices for the global block ``[...]`` (default: not chosen)."""
        layer_mask = np.asarray(layer_mask, bool)
        genes = np.repeat(layer_mask, self.per_layer, axis=-1)
        tail_shape = layer_mask.shape[:-1] + (len(GLOBAL_GENES),)
        tail = (np.zeros(tail_shape, bool) if global_mask is None
                else np.broadcast_to(np.asarray(global_mask, bool)[..., None], tail_shape))
        return np.concatenate([genes, tail], axis=-1)
