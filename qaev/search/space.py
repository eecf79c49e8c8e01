"""The search space: integer genes <-> :class:`~qaev.config.QuantConfig`.

Each searchable layer owns the genes of :data:`qaev.search.genome.LAYER_GENES` (weight bits,
activation mode, weight granularity, symmetry, weight rounding, bias correction), each an
index into an ordered option list (:meth:`SearchSpace.options`), so "neighbouring" indices
are neighbouring precisions; the global genes (calibration method, scale rule) follow. The
layout is :attr:`SearchSpace.genome`. Decoding fits every layer's setting to what the layer
supports, so the effective config (and its hash) is what identifies a candidate.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from qaev.config import (
    ACT_SETTINGS,
    NBITS_ACCURACY_LEVELS,
    WEIGHT_BITS,
    ActMode,
    CalibMethod,
    Granularity,
    LayerConfig,
    QuantConfig,
    Rounding,
    ScaleRule,
    WeightRange,
    act_name,
)
from qaev.errors import ConfigError
from qaev.search.genome import GLOBAL_GENES, LAYER_GENES, Genome
from qaev.model.layers import LayerInfo
from qaev.quantize.plan import fit_to_layer, layer_problem
from qaev.quantize.rounding.registry import get_rounding, rounding_entry

__all__ = ["SearchSpace", "ACT_OPTIONS", "select_layers", "frozen_layers", "set_apart"]

#: Activation options in precision order: (mode, bits).
ACT_OPTIONS: tuple[tuple[ActMode, int], ...] = tuple(ACT_SETTINGS.values())
#: Layer gene name -> its position within a layer's genes.
_GENE = {g.name: k for k, g in enumerate(LAYER_GENES)}
#: Gene name -> the SearchSpace attribute holding its option list.
_OPTIONS = {"w_bits": "w_bits", "act": "acts", "granularity": "granularities", "symmetric": "symmetric",
            "rounding": "roundings", "bias_correction": "bias_corrections", "calibration": "calibrations",
            "scale_rule": "scale_rules"}


def _matcher(pattern: str, what: str):
    if not pattern.startswith("re:"):
        return lambda name: name == pattern
    try:
        regex = re.compile(pattern[3:])
    except (re.error, RecursionError, OverflowError) as exc:
        raise ConfigError(f"{what}: selector {pattern!r} is not a valid regular expression ({exc})") from None
    return lambda name: regex.search(name) is not None


def select_layers(patterns: Sequence[str], names: Sequence[str], what: str) -> set[str]:
    """The ``names`` that ``patterns`` select (exact names or ``re:<regex>``); a pattern
    selecting nothing, or an invalid regular expression, is a :class:`ConfigError` naming
    ``what``."""
    chosen: set[str] = set()
    for pattern in patterns:
        matches = _matcher(pattern, what)
        hits = {n for n in names if matches(n)}
        if not hits:
            raise ConfigError(f"{what}: selector {pattern!r} matches no layer (use a layer name or 're:<regex>')")
        chosen |= hits
    return chosen


def frozen_layers(frozen, layers: Sequence[LayerInfo]) -> dict[str, LayerConfig]:
    """Layer name -> fixed setting for a mapping of selectors (names or ``re:`` patterns)
    to settings (:class:`LayerConfig` or its dict).

    Raises:
        ConfigError: a selector matches no layer, a setting is invalid, or a layer cannot
            take its setting; the message names the selector and the layer.
    """
    names = [layer.name for layer in layers]
    by_name = {layer.name: layer for layer in layers}
    out: dict[str, LayerConfig] = {}
    for pattern, cfg in dict(frozen).items():
        cfg = cfg if isinstance(cfg, LayerConfig) else LayerConfig.from_dict(cfg, where=f"frozen.{pattern}")
        for name in select_layers([pattern], names, "frozen"):
            problem = layer_problem(by_name[name], cfg)
            if problem is not None:
                raise ConfigError(f"frozen.{pattern}: layer {name} {problem}")
            out[name] = cfg
    return out


def set_apart(config: QuantConfig, layers: Sequence[LayerInfo], *, exclude: Sequence[str] = (),
              frozen=None) -> QuantConfig:
    """``config`` with the ``exclude`` selectors' layers float and the ``frozen`` mapping's
    layers (selector -> setting, as :func:`frozen_layers`) on their own settings.

    Raises:
        ConfigError: a selector matches no layer, or a frozen setting does not fit its layer.
    """
    names = [layer.name for layer in layers]
    excluded = select_layers(exclude, names, "exclude")
    fixed = frozen_layers(frozen, layers) if frozen is not None else {}
    kept = {name: cfg for name, cfg in config.layers.items() if name not in excluded}
    return replace(config, layers={**kept, **{k: v for k, v in fixed.items() if k not in excluded}})


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """What the search may choose.

    Args:
        layers: the model's quantizable layers.
        w_bits: allowed weight bits (``None`` = float), in any order.
        acts: allowed activation options, by name: ``a4``, ``a8``, ``a16``, ``dyn8``, ``float``.
        granularities: allowed weight granularities.
        symmetric: allowed symmetry values.
        calibrations: allowed calibration methods (global gene).
        scale_rules: allowed scale rules (global gene).
        roundings: allowed weight roundings (names from the rounding registry: ``nearest``,
            ``gptq``, ``codebook``, ...). Where a method does not apply to a layer or width
            (a codebook off 2-bit tables) it decodes as the first allowed option when that
            rounds onto the grid, else as ``nearest``; a grid method that does not apply to
            the layer, as ``nearest``.
        bias_corrections: allowed bias-correction settings (``False``, ``True``).
        weight_range: the weight grids' range rule for every layer (not a gene).
        exclude: selectors (names or ``re:`` patterns) of layers kept float.
        frozen: selector -> fixed :class:`LayerConfig` (not searched).
        nbits_accuracy: ONNX Runtime's ``accuracy_level`` of the ``MatMulNBits`` layers of
            every candidate (:attr:`~qaev.config.QuantConfig.nbits_accuracy`; not a gene).
    """

    layers: Sequence[LayerInfo]
    w_bits: Sequence[int | None] = (2, 4, 8)
    acts: Sequence[str] = ("a8", "float")
    granularities: Sequence[Granularity] = (Granularity.PER_CHANNEL,)
    symmetric: Sequence[bool] = (True,)
    calibrations: Sequence[CalibMethod] = (CalibMethod.MINMAX,)
    scale_rules: Sequence[ScaleRule] = (ScaleRule.FLOAT,)
    roundings: Sequence[Rounding] = (Rounding.NEAREST,)
    bias_corrections: Sequence[bool] = (False,)
    weight_range: WeightRange = WeightRange.MINMAX
    exclude: Sequence[str] = ()
    frozen: dict = field(default_factory=dict)
    nbits_accuracy: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.nbits_accuracy, bool) or self.nbits_accuracy not in NBITS_ACCURACY_LEVELS:
            raise ConfigError(f"nbits_accuracy: {self.nbits_accuracy!r} is not one of {NBITS_ACCURACY_LEVELS}")
        bits = sorted(set(self.w_bits), key=lambda b: 99 if b is None else b)
        for b in bits:
            if b not in WEIGHT_BITS:
                raise ConfigError(f"w_bits: {b!r} is not one of {WEIGHT_BITS}")
        unknown = [a for a in self.acts if a not in ACT_SETTINGS]
        if unknown:
            raise ConfigError(f"acts: {unknown[0]!r} is not one of {', '.join(ACT_SETTINGS)}")
        acts = [o for name, o in ACT_SETTINGS.items() if name in set(self.acts)]
        grans = [g for g in Granularity if g in {Granularity(x) for x in self.granularities}]
        cals = [c for c in CalibMethod if c in {CalibMethod(x) for x in self.calibrations}]
        rules = [r for r in ScaleRule if r in {ScaleRule(x) for x in self.scale_rules}]
        sym = sorted(set(bool(s) for s in self.symmetric), reverse=True)
        try:
            rounds = [r for r in Rounding if r in {Rounding(x) for x in self.roundings}]
        except ValueError:
            raise ConfigError(f"roundings: expected some of {', '.join(r.value for r in Rounding)}, "
                              f"got {list(self.roundings)!r}") from None
        scoped = [r.value for r in rounds if rounding_entry(r).model_scope]
        if scoped:
            raise ConfigError(f"roundings: {scoped[0]!r} learns the whole model at once (minutes per candidate), so it "
                              "is not a search gene; search with gptq and rebuild chosen points with "
                              f"`qaev refine RUN --point ID` (--rounding {scoped[0]})")
        corrections = sorted(set(bool(b) for b in self.bias_corrections))
        try:
            object.__setattr__(self, "weight_range", WeightRange(self.weight_range))
        except ValueError:
            raise ConfigError(f"weight_range: {self.weight_range!r} is not one of "
                              f"{', '.join(r.value for r in WeightRange)}") from None
        for label, values in (("w_bits", bits), ("acts", acts), ("granularities", grans), ("symmetric", sym),
                              ("calibrations", cals), ("scale_rules", rules), ("roundings", rounds),
                              ("bias_corrections", corrections)):
            if not values:
                raise ConfigError(f"{label}: the search space needs at least one option")
        names_all = [layer.name for layer in self.layers]
        excluded = select_layers(self.exclude, names_all, "exclude")
        frozen = frozen_layers(self.frozen, self.layers)
        object.__setattr__(self, "w_bits", tuple(bits))
        object.__setattr__(self, "acts", tuple(acts))
        object.__setattr__(self, "granularities", tuple(grans))
        object.__setattr__(self, "symmetric", tuple(sym))
        object.__setattr__(self, "calibrations", tuple(cals))
        object.__setattr__(self, "scale_rules", tuple(rules))
        object.__setattr__(self, "roundings", tuple(rounds))
        object.__setattr__(self, "bias_corrections", tuple(corrections))
        object.__setattr__(self, "frozen", frozen)
        searchable = [layer for layer in self.layers if layer.name not in excluded and layer.name not in frozen]
        if not searchable:
            raise ConfigError("search space: every layer is excluded or frozen; nothing to search")
        object.__setattr__(self, "_searchable", tuple(searchable))
        object.__setattr__(self, "genome", Genome(len(searchable)))
        object.__setattr__(self, "_decoded", {})  # genome bytes -> QuantConfig
        object.__setattr__(self, "_layer_memo", {})  # (layer index, genes) -> LayerConfig

    def __getstate__(self) -> dict:
        # copies and pickles leave the decoding memos behind
        return {k: v for k, v in self.__dict__.items() if k not in ("_decoded", "_layer_memo")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _decoded={}, _layer_memo={})

    @property
    def searchable(self) -> tuple[LayerInfo, ...]:
        """Layers with genes, in graph order."""
        return self._searchable  # type: ignore[attr-defined]

    @property
    def n_var(self) -> int:
        """Number of genes."""
        return self.genome.n_var

    def describe(self) -> dict:
        """The space as JSON-ready options (what a run searched)."""
        value = lambda v: getattr(v, "value", v)  # noqa: E731
        return {"w_bits": list(self.w_bits), "acts": [act_name(*a) for a in self.acts],
                "granularities": [value(g) for g in self.granularities], "symmetric": list(self.symmetric),
                "calibrations": [value(c) for c in self.calibrations],
                "scale_rules": [value(s) for s in self.scale_rules],
                "roundings": [value(r) for r in self.roundings], "bias_corrections": list(self.bias_corrections),
                "weight_range": value(self.weight_range), "exclude": list(self.exclude),
                "frozen": {name: cfg.to_dict() for name, cfg in self.frozen.items()},
                "nbits_accuracy": self.nbits_accuracy, "searchable_layers": len(self.searchable)}

    def options(self, gene: str) -> tuple:
        """The ordered option list of ``gene`` (a name of :data:`~qaev.search.genome.LAYER_GENES`
        or :data:`~qaev.search.genome.GLOBAL_GENES`)."""
        return getattr(self, _OPTIONS[gene])

    def upper(self) -> np.ndarray:
        """Largest index of every gene (lower bounds are all 0)."""
        per_layer = [len(self.options(g.name)) - 1 for g in LAYER_GENES]
        return np.array(per_layer * len(self.searchable) + [len(self.options(g.name)) - 1 for g in GLOBAL_GENES])

    def clip(self, x) -> np.ndarray:
        """Round and clip any real vector into valid integer genes."""
        return np.clip(np.rint(np.asarray(x, dtype=float)), 0, self.upper()).astype(int)

    def layer_genes(self, x: np.ndarray, i: int) -> np.ndarray:
        """The genes of searchable layer ``i``."""
        return x[self.genome.layer(i)]

    def decode(self, x) -> QuantConfig:
        """The effective config of genes ``x`` (each layer fitted to what it supports)."""
        x = self.clip(x)
        memo = self._decoded  # type: ignore[attr-defined]
        whole = x.tobytes()
        if whole not in memo:
            if len(memo) > 100_000:  # bound the memo on very long runs
                memo.clear()
            memo[whole] = self._decode(x)
        return memo[whole]

    def layer_gene_tuples(self, x: np.ndarray) -> list[tuple[int, ...]]:
        """Every searchable layer's genes of ``x`` as a tuple of ints, in layer order."""
        genome = self.genome
        block = np.asarray(x[:genome.per_layer * genome.n_layers]).reshape(genome.n_layers, genome.per_layer)
        return [tuple(row) for row in block.tolist()]

    def _decode(self, x: np.ndarray) -> QuantConfig:
        layers = {name: cfg for name, cfg in self.frozen.items()}
        for i, (layer, genes) in enumerate(zip(self.searchable, self.layer_gene_tuples(x))):
            fitted = self.layer_config(i, genes)
            if fitted is not None:
                layers[layer.name] = fitted
        genome = self.genome
        return QuantConfig(layers=layers, calibration=self.calibrations[x[genome.global_index("calibration")]],
                           scale_rule=self.scale_rules[x[genome.global_index("scale_rule")]],
                           nbits_accuracy=self.nbits_accuracy)

    def layer_config(self, i: int, genes: tuple[int, ...]) -> LayerConfig | None:
        """The effective, fitted config of searchable layer ``i`` under its ``genes``
        (memoised: there are few distinct gene tuples per layer)."""
        memo = self._layer_memo  # type: ignore[attr-defined]
        if (i, genes) not in memo:
            w, a, g, s, r, b = (genes[_GENE[name]] for name in
                                ("w_bits", "act", "granularity", "symmetric", "rounding", "bias_correction"))
            mode, a_bits = self.acts[a]
            w_bits = self.w_bits[w]
            if mode is ActMode.DYNAMIC and (w_bits is None or w_bits > 8):
                mode = ActMode.FLOAT
            rounding = self.roundings[r]
            if not _rounding_applies(rounding, w_bits, self.searchable[i]):
                # where a method does not apply (a codebook off 2-bit tables) the gene means the
                # first option, if it rounds onto the grid (fit_to_layer settles the rest)
                first = self.roundings[0]
                rounding = first if rounding_entry(first).on_grid else Rounding.NEAREST
            cfg = LayerConfig(w_bits=w_bits, act=mode, a_bits=a_bits, granularity=self.granularities[g],
                              symmetric=self.symmetric[s], rounding=rounding,
                              bias_correction=self.bias_corrections[b], weight_range=self.weight_range)
            fitted = fit_to_layer(cfg, self.searchable[i])
            memo[(i, genes)] = None if fitted is None else fitted.effective()
        return memo[(i, genes)]

    def encode_uniform(self, *, w_bits: int | None, act: str, granularity: Granularity | None = None) -> np.ndarray:
        """Genes giving every searchable layer the same setting (nearest allowed options)."""
        w = _nearest_index([99 if b is None else b for b in self.w_bits], 99 if w_bits is None else w_bits)
        names = [act_name(*o) for o in self.acts]
        a = names.index(act) if act in names else len(names) - 1
        g = self.granularities.index(granularity) if granularity in self.granularities else 0
        row = np.zeros(self.n_var, dtype=int)
        genome = self.genome
        row[genome.column("w_bits")], row[genome.column("act")], row[genome.column("granularity")] = w, a, g
        return row

    def encode_layer(self, cfg: LayerConfig, row: np.ndarray, i: int) -> np.ndarray:
        """Genes of searchable layer ``i`` for ``cfg`` (nearest allowed option per gene;
        genes ``cfg`` leaves open keep their value in ``row``)."""
        genes = self.layer_genes(row, i).copy()
        _W, _A, _G, _S, _R, _B = (_GENE[name] for name in
                                  ("w_bits", "act", "granularity", "symmetric", "rounding", "bias_correction"))
        genes[_W] = _nearest_index([99 if b is None else b for b in self.w_bits],
                                   99 if cfg.w_bits is None else cfg.w_bits)
        option = (cfg.act, cfg.a_bits if cfg.act is ActMode.STATIC else 8)
        if option in self.acts:
            genes[_A] = self.acts.index(option)
        elif cfg.act is ActMode.STATIC:
            static = [j for j, (mode, _) in enumerate(self.acts) if mode is ActMode.STATIC]
            if static:
                genes[_A] = min(static, key=lambda j: abs(self.acts[j][1] - cfg.a_bits))
        if cfg.granularity in self.granularities:
            genes[_G] = self.granularities.index(cfg.granularity)
        if cfg.symmetric in self.symmetric:
            genes[_S] = self.symmetric.index(cfg.symmetric)
        if cfg.rounding in self.roundings:
            genes[_R] = self.roundings.index(cfg.rounding)
        if cfg.bias_correction in self.bias_corrections:
            genes[_B] = self.bias_corrections.index(cfg.bias_correction)
        return genes

    def key(self, x) -> str:
        """Hash of the effective config of ``x``."""
        return self.decode(x).key()


def _rounding_applies(rounding: Rounding, w_bits: int | None, layer: LayerInfo) -> bool:
    widths = rounding_entry(rounding).widths
    return (widths is None or w_bits in widths) and get_rounding(rounding).problem(layer) is None


def _nearest_index(values: Sequence[int], target: int) -> int:
    return int(np.argmin([abs(v - target) for v in values]))
