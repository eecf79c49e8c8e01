"""One float graph that stands in for every candidate's QDQ model while screening.

Building a candidate's QDQ graph and opening its ONNX Runtime session costs a few
milliseconds whatever the model's size; on a small model that is more than running it on
a first stage of the data. :class:`Simulator` builds one graph for all candidates: each
quantizable layer's weight (and a Conv/Gemm bias, given to every such layer) is a graph
input, and every activation tensor a static config may quantize passes a fake-quantizer
``Mul(Clip(Round(Div(x, s)), lo, hi), s)`` whose scale and integer bounds are inputs too.
A candidate is then only a feed: its dequantized weights, the int32-rounded biases of its
fused integer layers, and its activation grids (``lo = -zero_point``, ``hi = 2^bits - 1 -
zero_point``); a tensor it leaves float gets ``s = 2^-64`` and infinite bounds, which
passes every value above 2^-41 in magnitude through unchanged (scaling by a power of two
is exact, and such values are integers once scaled).

The outputs equal the QDQ model's evaluated in float (ONNX Runtime optimisation level ``disable``) up to
float32 rounding (the runtime packs constant weights, not inputs, its own way; tested).
At the default optimisation level the runtime fuses QDQ groups into integer kernels whose
arithmetic differs slightly, so simulated values serve screening only: a candidate worth
finishing is measured on its own QDQ model. Dynamic activations and bias corrections that
do not fold into a constant bias are not simulated (:meth:`Simulator.covers`).
"""
from __future__ import annotations

import threading

import numpy as np
import onnx
from onnx import helper

from qaev.config import ActMode, QuantConfig
from qaev.quantize.bias_correction import fold_scale, output_correction
from qaev.quantize.graph_edit import GraphEditor
from qaev.quantize.plan import activation_plan
from qaev.quantize.qdq import act_params_of, int32_bias, quantized_weight, table_weight
from qaev.quantize.quantizer import Quantizer, activation_tensors
from qaev.quantize.rounding.registry import get_rounding, rounding_entry
from qaev.model.session import make_session

__all__ = ["Simulator", "PASS_SCALE"]

#: Scale of a tensor a candidate leaves float (with infinite bounds: values pass unchanged).
PASS_SCALE = 2.0**-64


class Simulator:
    """The screening graph of ``quantizer``'s model (built on first use) and its session.

    Args:
        quantizer: the engine whose QDQ models the graph stands in for.
        threads: ORT intra-op threads of the session.
        level: ORT optimisation level of the session (the run's).
    """

    def __init__(self, quantizer: Quantizer, *, threads: int = 1, level: str = "extended") -> None:
        self.quantizer = quantizer
        self.threads = threads
        self.level = level
        self._session = None
        self._base: dict[str, np.ndarray] = {}  # input name -> value standing for the float model
        self._weights: dict[str, str] = {}  # layer -> its weight input
        self._biases: dict[str, tuple[str, onnx.NodeProto, float]] = {}  # layer -> bias input, node, fold_scale
        self._grids: dict[str, tuple[str, str, str]] = {}  # tensor -> its scale, lo, hi inputs
        self._dequantized: dict[int, tuple[object, np.ndarray]] = {}
        self._lock = threading.Lock()

    @property
    def session(self):
        """The ORT session of the screening graph."""
        with self._lock:  # candidates are prepared on more than one thread
            if self._session is None:
                self._session = make_session(self._graph(), threads=self.threads, level=self.level)
        return self._session

    def _graph(self) -> onnx.ModelProto:
        model = self.quantizer.model
        ed = GraphEditor(model.proto)
        graph = ed.model.graph

        def add_input(name: str, value: np.ndarray) -> str:
            name = ed.fresh(name)
            graph.input.append(helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape)))
            self._base[name] = value
            return name

        for layer in self.quantizer.layers:
            if not layer.weight:
                continue
            node = ed.node(layer.name)
            slot = 0 if layer.op_type == "Gather" else 1
            node.input[slot] = self._weights[layer.name] = add_input(f"sim.w.{layer.name}", model.weight(layer.weight))
            fold = fold_scale(model, layer, node) if layer.op_type in ("Conv", "Gemm") else None
            if fold is not None:
                has_bias = len(node.input) > 2 and node.input[2]
                channels = layer.weight_shape[layer.channel_axis]
                bias = model.weight(node.input[2]) if has_bias else np.zeros(channels, np.float32)
                while len(node.input) < 3:
                    node.input.append("")
                node.input[2] = add_input(f"sim.b.{layer.name}", bias)
                self._biases[layer.name] = (node.input[2], node, fold)
        for tensor in activation_tensors(self.quantizer.layers):
            s = add_input(f"sim.s.{tensor}", np.full((), PASS_SCALE, np.float32))
            lo = add_input(f"sim.lo.{tensor}", np.full((), -np.inf, np.float32))
            hi = add_input(f"sim.hi.{tensor}", np.full((), np.inf, np.float32))
            self._grids[tensor] = (s, lo, hi)
            as_output = ed.is_output(tensor)
            src = ed.detach_output(tensor) if as_output else tensor
            names = [ed.fresh(f"sim.{step}.{tensor}") for step in ("div", "round", "clip")]
            out = tensor if as_output else ed.fresh(f"sim.fq.{tensor}")
            prefix = f"sim.fq.{tensor}."
            reader = ed.add_node("Div", [src, s], [names[0]], name=prefix + "Div")
            ed.add_node("Round", [names[0]], [names[1]], name=prefix + "Round")
            ed.add_node("Clip", [names[1], lo, hi], [names[2]], name=prefix + "Clip")
            ed.add_node("Mul", [names[2], s], [out], name=prefix + "Mul")
            if not as_output:
                ed.rewire_consumers(tensor, out, skip=(reader,))
        return ed.finish()

    def covers(self, config: QuantConfig) -> bool:
        """Whether the graph can stand in for ``config``'s QDQ model (no dynamic
        activations, every bias correction folds into a constant bias)."""
        self.session  # noqa: B018 - builds the graph, which records the bias inputs
        for name, cfg in config.layers.items():
            if cfg.act is ActMode.DYNAMIC:
                return False
            if cfg.w_bits is not None and cfg.effective().bias_correction and name not in self._biases:
                return False
        return True

    def feed(self, config: QuantConfig) -> dict[str, np.ndarray]:
        """The inputs standing for ``config`` (resolved: its static activations carry
        ranges), beside the data's."""
        q = self.quantizer
        self.session  # noqa: B018 - builds the graph and the inputs standing for the float model
        params = dict(self._base)
        plan = activation_plan(config, q.layers)
        acts = {t: act_params_of(config, t, bits) for t, bits in plan.bits.items()}
        for layer in q.layers:
            cfg = config.layer(layer.name)
            if cfg is None or cfg.w_bits is None:
                continue
            if not rounding_entry(cfg.effective().rounding).on_grid:
                method = get_rounding(cfg.effective().rounding)
                params[self._weights[layer.name]] = self._dequantize(table_weight(q.model, layer, cfg, q.weights),
                                                                     method.dequantize)
                continue
            qw = quantized_weight(q.model, layer, cfg, config, q.weights, inputs=q.inputs)
            params[self._weights[layer.name]] = self._dequantize(qw)
            if layer.name not in self._biases:
                continue
            name, node, fold = self._biases[layer.name]
            bias = params[name]
            if cfg.effective().bias_correction:
                correction = output_correction(q.model.weight(layer.weight), qw, q.inputs.get(layer), layer=layer)
                bias = (bias.astype(np.float64) + fold * correction).astype(np.float32)
            if cfg.act is ActMode.STATIC and cfg.w_bits <= 8:
                found = int32_bias(q.model, node, qw, acts[layer.act_inputs[0]].scale, bias)
                if found is not None:
                    bias = found[0].astype(np.float32) * found[1]
            params[name] = bias
        for tensor, grid in acts.items():
            s, lo, hi = self._grids[tensor]
            params[s] = np.array(grid.scale, np.float32)
            params[lo] = np.array(-grid.zero_point, np.float32)
            params[hi] = np.array(2**grid.bits - 1 - grid.zero_point, np.float32)
        return params

    def _dequantize(self, qw, dequantize=None) -> np.ndarray:
        """``qw.dequantize()`` (or ``dequantize(qw)``), memoised per cached weight (kept alive here)."""
        found = self._dequantized.get(id(qw))
        if found is None or found[0] is not qw:
            found = self._dequantized[id(qw)] = (qw, qw.dequantize() if dequantize is None else dequantize(qw))
        return found[1]
