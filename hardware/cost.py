"""Analytic per-layer latency, energy, size and memory estimates from a hardware table.

Every number produced here is an **estimate** from the roofline model (Williams, Waterman
and Patterson, "Roofline", CACM 2009) and the energy model of Horowitz ("Computing's
energy problem", ISSCC 2014), with the coefficients of a :class:`HardwareTable`:

* latency = max(MACs / peak_rate(pair), bytes / bandwidth) + overhead + conversions;
* energy  = MACs x pJ/MAC(pair) + bytes x pJ/byte + conversions x pJ/element.

``pair`` is the *executed* pair after the table's fallbacks, or the table's fused low-bit
kernel (``nbits_kernel``) for a block-wise weight-only MatMul that the config runs as
``MatMulNBits`` (:func:`runs_fused`). A layer that asks for static
activations but executes as a float op still runs its QuantizeLinear/DequantizeLinear pairs
(fake quantization), and those conversions are counted. Sizes are exact bit counts
(:mod:`qaev.quantize.sizes`); activation sizes are derived from MACs and the weight shape.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from qaev.config import ActMode, QuantConfig
from qaev.errors import ConfigError
from qaev.hardware.pairs import Pair
from qaev.hardware.activations import activation_elements
from qaev.hardware.table import HardwareTable, list_tables, load_table
from qaev.model.layers import LayerInfo

#: ``(layer, cfg, bits=None) -> bytes`` of a layer's stored weight.
WeightBytes = Callable[..., int]

__all__ = ["LayerCost", "CostReport", "estimate", "nbits_shaped", "runs_fused", "load_table", "list_tables"]

_ACT_BYTES = {"4": 0.5, "8": 1.0, "16": 2.0}
#: State of a float tensor that still passes through a QuantizeLinear -> DequantizeLinear pair.
_FAKE = "fake"


@dataclass(frozen=True, kw_only=True)
class LayerCost:
    """Estimated cost of one layer for one batch.

    Attributes:
        name, op_type: the layer.
        w_bits: weight bits asked for (None: float).
        act: ``static``, ``dynamic`` or ``float``; a_bits: static activation bits or None.
        wanted, executed: pair keys before and after the table's fallbacks.
        native: whether ``wanted`` runs natively.
        macs: multiply-accumulates for the batch.
        weight_bytes: exact stored weight bytes (values, scales, zero points).
        weight_bytes_moved: weight bytes read per batch on the target.
        act_bytes: activation bytes read and written per batch.
        compute_s, memory_s, overhead_s, conversion_s: latency terms.
        bound: ``compute`` or ``memory``, whichever roofline term is larger.
        est_latency_s, est_energy_j: the estimates.
    """

    name: str
    op_type: str
    w_bits: int | None
    act: str
    a_bits: int | None
    wanted: str
    executed: str
    native: bool
    macs: int
    weight_bytes: int
    weight_bytes_moved: float
    act_bytes: float
    compute_s: float
    memory_s: float
    overhead_s: float
    conversion_s: float
    bound: str
    est_latency_s: float
    est_energy_j: float


@dataclass(frozen=True, kw_only=True)
class CostReport:
    """Estimated whole-model cost on one target (``kind`` is always ``estimate``).

    Attributes:
        target: table name; device: what it models; batch: samples per run.
        rows: one :class:`LayerCost` per layer, in graph order.
        est_latency_ms, est_energy_mj: sums over the layers.
        size_mb: exact weight bytes of all listed layers / 1e6 (float weights 4 bytes).
        peak_memory_mb: largest weight + activation working set of one layer / 1e6.
        fallbacks: ``(layer, wanted pair, executed pair)`` for every non-native layer.
        warnings: what the estimate had to assume.
    """

    target: str
    device: str
    batch: int
    rows: tuple[LayerCost, ...]
    est_latency_ms: float
    est_energy_mj: float
    size_mb: float
    peak_memory_mb: float
    fallbacks: tuple[tuple[str, str, str], ...]
    warnings: tuple[str, ...]
    kind: str = "estimate"

    def to_dict(self) -> dict:
        """Plain JSON-ready dict."""
        out = asdict(self)
        out["rows"] = [asdict(r) for r in self.rows]
        out["fallbacks"] = [list(f) for f in self.fallbacks]
        out["warnings"] = list(self.warnings)
        return out


def _moved_weight_bytes(layer, cfg, wanted: Pair, executed: Pair, table, elements: int,
                        sizes: WeightBytes) -> tuple[float, int]:
    """Weight bytes read per run and weight elements dequantized per run.

    Rules (hardware/README.md): float weights and integer weights dequantized when the
    model is compiled (``load``) are read at the target's float width; integer weights
    executed as float on a ``runtime`` table are read at their stored width and
    dequantized every run; integer weights repacked to another integer width are read at
    that width; otherwise the stored bytes are read.
    """
    if not layer.has_weight:
        return 0.0, 0
    elements = min(elements, layer.params) if layer.op_type == "Gather" else layer.params
    scale = elements / layer.params if layer.params else 0.0  # a Gather reads only its rows
    if executed.w == "float":
        if wanted.w == "float" or table.weight_decompression == "load":
            return float(elements * table.float_bytes), 0
        return sizes(layer, cfg) * scale, elements
    bits = None if wanted.w == executed.w else int(executed.w)
    return sizes(layer, cfg, bits=bits) * scale, 0


def _act_conversions(store: str, fake: bool, dynamic: bool, before: str, n_in: int, n_out: int, last: bool) -> int:
    """Activation elements quantized or dequantized for one layer (each layer pays for its
    input tensor; the last layer also for its output).

    ``store`` is how the layer holds its activations (``4``/``8``/``16`` for a fused integer
    kernel, else ``float``); ``before`` is the state of its input: a storage, or
    :data:`_FAKE` for a float tensor still carrying a QuantizeLinear -> DequantizeLinear
    pair. ``fake`` marks a layer that asks for static activations but runs as a float op:
    its QDQ pairs stay in the graph and run (fake quantization), a quantize and a
    dequantize per element on its input (only the dequantize where the producer is an
    integer kernel whose output is already quantized) and on its output. Otherwise an
    element is converted once at each change of storage, and a dynamic layer quantizes its
    input once more.
    """
    if fake:
        convert = n_in * (1 if before in _ACT_BYTES else 2)
    elif before == _FAKE:
        convert = n_in * (1 if store in _ACT_BYTES else 2)  # its quantize, plus the dequantize a float op needs
    else:
        convert = n_in * (store != before)
    convert += n_in * dynamic
    if last:
        convert += n_out * (2 if fake else store != "float")
    return convert


def nbits_shaped(layer: LayerInfo, cfg, *, max_bits: int = 4) -> bool:
    """Whether ``layer`` under ``cfg`` is what ONNX Runtime's ``MatMulNBits`` takes: a MatMul
    with a 2-D weight, block-wise integer weights of at most ``max_bits`` bits, float
    activations (weight-only)."""
    return (cfg is not None and layer.op_type == "MatMul" and len(layer.weight_shape) == 2
            and cfg.act is ActMode.FLOAT and cfg.w_bits is not None and cfg.w_bits <= max_bits
            and cfg.granularity.block_size is not None)


def runs_fused(layer: LayerInfo, cfg, table: HardwareTable, nbits_accuracy: int) -> bool:
    """Whether ``layer`` is costed on the table's fused low-bit kernel: the table has one, and
    the layer is :func:`nbits_shaped` up to its ``max_bits`` in a config exported as
    ``MatMulNBits`` (``nbits_accuracy`` 1-4)."""
    kernel = table.nbits_kernel
    return kernel is not None and nbits_accuracy > 0 and nbits_shaped(layer, cfg, max_bits=kernel.max_bits)


def _layer_cost(layer: LayerInfo, cfg, table: HardwareTable, batch: int, before: str, last: bool,
                sizes: WeightBytes, nbits_accuracy: int = 0):
    wanted = Pair.of(cfg, layer)
    fused = runs_fused(layer, cfg, table, nbits_accuracy)
    executed = wanted if fused else table.executed(wanted)
    per_sample = layer.macs or 0
    macs = per_sample * batch
    n_in, n_out = activation_elements(layer)
    n_in, n_out = n_in * batch, n_out * batch
    store = "float" if layer.op_type == "Gather" else executed.a_storage
    act_bytes = (n_in + n_out) * _ACT_BYTES.get(store, table.float_bytes)
    if fused:  # stored weights read once, unpacked in registers; level 4 quantizes the input
        kernel = table.nbits_kernel
        rate, mac_pj = kernel.peak_macs_per_s.value, kernel.energy_per_mac.value
        w_moved, w_convert = float(sizes(layer, cfg)), 0
        dynamic = nbits_accuracy == 4
    else:
        rate, mac_pj = table.rate(executed), table.mac_energy(executed)
        w_moved, w_convert = _moved_weight_bytes(layer, cfg, wanted, executed, table, n_out, sizes)
        dynamic = executed.a == "dyn8"
    fake = store == "float" and wanted.a in _ACT_BYTES and layer.op_type != "Gather"
    a_convert = _act_conversions(store, fake, dynamic, before, n_in, n_out, last)
    after = _FAKE if fake else store
    compute_s = macs / rate if macs else 0.0
    memory_s = (w_moved + act_bytes) / table.memory_bandwidth.value
    conversion_s = a_convert * table.act_conversion_time.value + w_convert * table.weight_conversion_time.value
    overhead_s = table.layer_overhead.value
    energy_pj = (
        macs * mac_pj
        + (w_moved + act_bytes) * table.energy_per_byte.value
        + a_convert * table.act_conversion_energy.value
        + w_convert * table.weight_conversion_energy.value
    )
    row = LayerCost(
        name=layer.name,
        op_type=layer.op_type,
        w_bits=wanted.w_bits if layer.has_weight else None,
        act=("float" if cfg is None or wanted.a == "float" else cfg.act.value),
        a_bits=int(wanted.a) if wanted.a in ("4", "8", "16") else None,
        wanted=str(wanted),
        executed=f"{executed}:nbits" if fused else str(executed),
        native=fused or table.is_native(wanted),
        macs=macs,
        weight_bytes=sizes(layer, cfg),
        weight_bytes_moved=w_moved,
        act_bytes=act_bytes,
        compute_s=compute_s,
        memory_s=memory_s,
        overhead_s=overhead_s,
        conversion_s=conversion_s,
        bound="compute" if compute_s >= memory_s else "memory",
        est_latency_s=max(compute_s, memory_s) + overhead_s + conversion_s,
        est_energy_j=energy_pj * 1e-12,
    )
    return row, after


def _rows(layers, config, table, batch, weight_bytes, memo) -> tuple[list[LayerCost], list[str]]:
    """Every layer's cost row in graph order (from ``memo`` where it holds the same layer,
    setting and input state) and the warnings about unknown sizes."""
    rows, warnings, before = [], [], "float"
    for i, layer in enumerate(layers):
        if layer.macs is None:
            warnings.append(f"{layer.name}: MACs unknown (unresolved shapes); counted as 0")
        if layer.op_type == "MatMulAct" and layer.macs:
            warnings.append(f"{layer.name}: activation sizes of a MatMul of two activations assumed cubic")
        cfg, last = config.layer(layer.name), i == len(layers) - 1
        key = (i, cfg, before, last, config.nbits_accuracy)
        found = memo.get(key) if memo is not None else None
        if found is None:
            found = _layer_cost(layer, cfg, table, batch, before, last, weight_bytes, config.nbits_accuracy)
            if memo is not None:
                memo[key] = found
        row, before = found
        rows.append(row)
    return rows, warnings


def estimate(
    layers: Sequence[LayerInfo],
    config: QuantConfig,
    table: HardwareTable | str,
    *,
    weight_bytes: WeightBytes,
    batch: int = 1,
    memo: dict | None = None,
) -> CostReport:
    """Estimate latency, energy, size and peak memory of ``config`` on a target.

    Layers are taken in the given (graph) order; consecutive layers are assumed to feed
    each other when precision boundaries are costed. Layers the config does not quantize
    run as ``wfloatafloat``.

    Args:
        layers: the model's quantizable layers (:func:`qaev.model.layers.find_layers`).
        config: the quantization config.
        table: a :class:`HardwareTable` or a bundled name / YAML path.
        weight_bytes: ``(layer, cfg, bits=None) -> int``, the exact stored bytes of a layer's
            weight under its config (the engine's count: :func:`qaev.quantize.sizes.weight_bytes`;
            :func:`qaev.quantize.sizes.estimate_cost` passes it).
        batch: samples per run (MACs and activations scale, weights are read once).
        memo: a dict kept across calls with the same ``layers``, ``table``, ``batch`` and
            ``weight_bytes``: each layer's cost is computed once per setting and input state
            (a search estimates thousands of configs of the same layers).

    Returns:
        A :class:`CostReport`; every figure in it is an estimate.

    Raises:
        ConfigError: ``batch`` < 1, or the config names layers that are not listed.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch: expected a positive integer, got {batch!r}")
    if not isinstance(table, HardwareTable):
        table = load_table(table)
    names = {layer.name for layer in layers}
    stray = sorted(set(config.layers) - names)
    if stray:
        raise ConfigError(f"config: layer(s) not in the model: {', '.join(stray[:5])}")
    rows, warnings = _rows(layers, config, table, batch, weight_bytes, memo)
    peak = max((r.weight_bytes_moved + r.act_bytes for r in rows), default=0.0)
    return CostReport(
        target=table.name,
        device=table.device,
        batch=batch,
        rows=tuple(rows),
        est_latency_ms=sum(r.est_latency_s for r in rows) * 1e3,
        est_energy_mj=sum(r.est_energy_j for r in rows) * 1e3,
        size_mb=sum(r.weight_bytes for r in rows) / 1e6,
        peak_memory_mb=peak / 1e6,
        fallbacks=tuple((r.name, r.wanted, r.executed) for r in rows if not r.native),
        warnings=tuple(warnings),
    )
