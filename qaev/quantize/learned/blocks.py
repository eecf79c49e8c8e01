"""Cutting a model into blocks for block reconstruction.

BRECQ (Li et al., "BRECQ: Pushing the Limit of Post-Training Quantization by Block
Reconstruction", ICLR 2021) reconstructs the output of one *block* at a time: a residual
block of a CNN or a transformer layer, large enough that the rounding of its layers is
learned jointly (their interactions are what layer-wise rounding misses), small enough to
generalise from a few hundred calibration samples.

Blocks are found on the graph, not by layer names. A *cut* is a point in the node order
where at most one *main* tensor is live (produced before the point and read after it); main
tensors are those computed from the output of some quantizable weight layer, so side
tensors such as attention masks, which depend on the model's inputs only, may cross cuts
(every block reads them from the float model). The stretches between cuts are atomic: a
residual branch and its skip connection never split. Stretches are then merged in order
into blocks: once a block holds ``joins`` residual joins (an ``Add``/``Sum`` of two main
tensors, one of them computed by a Conv/Gemm/MatMul) or at least ``max_layers`` weight
layers, it closes at the last cut before the next weight layer (so a fused activation or a
LayerNorm after a join stays with the block it ends). With the
defaults an inverted-residual (MBConv) block of EfficientNet or MobileNet becomes one
block, with or without its skip connection; ``joins=2`` with a large ``max_layers`` makes a
BERT layer (attention and feed-forward sublayers) one block.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import onnx

from qaev.errors import ModelError
from qaev.model.layers import LayerInfo

__all__ = ["Block", "cut_blocks"]

_JOINS = frozenset({"Add", "Sum"})


@dataclass(frozen=True)
class Block:
    """A run of consecutive nodes whose only main input and output are one tensor each.

    Attributes:
        name: a readable name (the first and last weight layer's).
        nodes: names of its nodes, in graph order.
        inputs: tensors it reads from outside: ``main_input`` first, then side tensors.
        main_input: the main tensor entering (a graph input for the first block).
        output: the main tensor leaving (a graph output for the last block).
        layers: names of the quantizable weight layers inside, in graph order.
    """

    name: str
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    main_input: str
    output: str
    layers: tuple[str, ...]


def _main_tensors(nodes: Sequence[onnx.NodeProto], weighted: set[str]) -> set[str]:
    """Tensors computed from the output of a weight layer (node names in ``weighted``)."""
    main: set[str] = set()
    for node in nodes:
        if node.name in weighted or any(t in main for t in node.input):
            main.update(t for t in node.output if t)
    return main


def _cuts(nodes: Sequence[onnx.NodeProto], main: set[str], inits: set[str],
          graph_inputs: Sequence[str]) -> list[tuple[int, tuple[str, ...]]]:
    """Positions ``i`` (before node ``i``) where at most one main tensor is live, with the
    tensors live there (main first)."""
    last_use: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for t in node.input:
            if t and t not in inits:
                last_use[t] = i
    produced_at = {t: -1 for t in graph_inputs}
    produced_at.update({t: i for i, n in enumerate(nodes) for t in n.output if t})
    cuts = []
    for i in range(len(nodes) + 1):
        live = [t for t, p in produced_at.items() if p < i and last_use.get(t, -1) >= i]
        live_main = [t for t in live if t in main]
        if len(live_main) <= 1:
            cuts.append((i, tuple(live_main + [t for t in live if t not in main])))
    return cuts


def _is_join(node: onnx.NodeProto, main: set[str], deep: set[str]) -> bool:
    """An ``Add``/``Sum`` of two main tensors, one computed by a Conv/Gemm/MatMul (so the sum
    of two embedding lookups is not a residual join)."""
    return node.op_type in _JOINS and sum(t in main for t in node.input) >= 2 and any(t in deep for t in node.input)


def cut_blocks(proto: onnx.ModelProto, layers: Sequence[LayerInfo], *, joins: int = 1,
               max_layers: int = 3) -> list[Block]:
    """The blocks of ``proto``, in graph order (see the module docstring).

    Args:
        proto: the (normalised, topologically sorted) model.
        layers: its quantizable layers; those with a weight make tensors main.
        joins: residual joins after which a block closes.
        max_layers: weight layers after which a block closes without a join.

    Returns:
        Blocks covering every node, in order, each with at least one weight layer.

    Raises:
        ModelError: the graph has no weight layer, or several main outputs.
    """
    nodes = list(proto.graph.node)
    by_node = {layer.name: layer for layer in layers if layer.has_weight}
    if not by_node:
        raise ModelError("block reconstruction needs at least one weight layer")
    main = _main_tensors(nodes, set(by_node))
    deep = _main_tensors(nodes, {name for name, layer in by_node.items() if layer.op_type != "Gather"})
    inits = {i.name for i in proto.graph.initializer}
    graph_inputs = [v.name for v in proto.graph.input if v.name not in inits]
    cuts = _cuts(nodes, main, inits, graph_inputs)
    outputs = [o.name for o in proto.graph.output]
    blocks, begin, n_layers, n_joins = [], 0, 0, 0
    for pos in range(1, len(cuts)):
        chunk = nodes[cuts[pos - 1][0]:cuts[pos][0]]
        weighted = sum(n.name in by_node for n in chunk)
        if weighted and n_layers and (n_joins >= joins or n_layers >= max_layers):
            blocks.append(_block(nodes, cuts, begin, pos - 1, outputs, main, by_node))
            begin, n_layers, n_joins = pos - 1, 0, 0
        n_layers += weighted
        n_joins += sum(_is_join(n, main, deep) for n in chunk)
    blocks.append(_block(nodes, cuts, begin, len(cuts) - 1, outputs, main, by_node))
    return blocks


def _output_of(chunk: Sequence[onnx.NodeProto], live_after: tuple[str, ...], outputs: Sequence[str],
               main: set[str]) -> str:
    produced = {t for n in chunk for t in n.output}
    leaving = [t for t in live_after if t in produced and t in main] or [t for t in outputs if t in produced]
    if len(leaving) != 1:
        raise ModelError(f"block ending at node {chunk[-1].name!r} has {len(leaving)} main outputs")
    return leaving[0]


def _block(nodes, cuts, begin: int, end: int, outputs, main, by_node) -> Block:
    """The block between cut ``begin`` and cut ``end``."""
    chunk = nodes[cuts[begin][0]:cuts[end][0]]
    live_before, live_after = cuts[begin][1], cuts[end][1]
    layers = tuple(n.name for n in chunk if n.name in by_node)
    return Block(name=f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else layers[0],
                 nodes=tuple(n.name for n in chunk), inputs=tuple(live_before), main_input=live_before[0],
                 output=_output_of(chunk, live_after, outputs, main), layers=layers)
