"""Costs computed from a model's structure: MACs, parameters, live memory, latency.

These are counts and estimates, never measurements. The measured TFLM arena
comes from ``tinydeploy.runtime.tflm``; an engine's figures on a board are put
together in ``tinydeploy.costs.figures``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection

from tinydeploy.core.model import Model, Operator

if TYPE_CHECKING:
    from tinydeploy.core.boards import Board


@dataclass(frozen=True)
class LayerCost:
    index: int
    op: str
    macs: int
    output_shape: tuple[int, ...]
    work: int = 0  # what the op's time grows with: its MACs, or for an op without MACs its largest tensor's elements

    def to_dict(self) -> dict:
        return {"index": self.index, "op": self.op, "macs": self.macs, "work": self.work,
                "output_shape": list(self.output_shape)}


def _elements(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def op_macs(model: Model, op: Operator) -> int:
    """Multiply-accumulates of one operator (0 for ops that do no MACs).

    CONV_2D: every output element sums kh*kw*Cin products (weights are
    [Cout, kh, kw, Cin]). DEPTHWISE_CONV_2D: kh*kw per output element (weights
    [1, kh, kw, Cout]). FULLY_CONNECTED: one product per input feature per
    output element (weights [units, features]). TRANSPOSE_CONV: every input
    element scatters into kh*kw*Cout outputs.
    """
    if not op.outputs or op.outputs[0] < 0 or len(op.inputs) < 2:
        return 0
    out = model.tensors[op.outputs[0]]
    weights = model.tensors[op.inputs[1]] if op.inputs[1] >= 0 else None
    if weights is None:
        return 0
    w = weights.shape
    if op.name == "CONV_2D" and len(w) == 4:
        return out.elements * w[1] * w[2] * w[3]
    if op.name == "DEPTHWISE_CONV_2D" and len(w) == 4:
        return out.elements * w[1] * w[2]
    if op.name == "FULLY_CONNECTED" and len(w) == 2:
        return out.elements * w[1]
    if op.name == "TRANSPOSE_CONV" and len(op.inputs) >= 3 and len(w) == 4:
        data = model.tensors[op.inputs[2]]
        return data.elements * w[0] * w[1] * w[2]
    return 0


def op_work(model: Model, op: Operator, macs: int) -> int:
    """The size an op's time grows with: its MACs; for an op without MACs (pooling, ADD,
    SOFTMAX, a copy) the elements of its largest input or output tensor."""
    if macs:
        return macs
    tensors = [model.tensors[i] for i in (*op.inputs[:1], *op.outputs) if i >= 0]
    return max((t.elements for t in tensors), default=0)


def layer_costs(model: Model) -> list[LayerCost]:
    """MACs, work and output shape for every operator of the main subgraph, in order."""
    layers = []
    for op in model.operators:
        macs = op_macs(model, op)
        layers.append(LayerCost(op.index, op.name, macs, model.tensors[op.outputs[0]].shape if op.outputs else (),
                                op_work(model, op, macs)))
    return layers


def param_count(model: Model) -> int:
    """Elements in constant tensors (weights, biases, and constant shapes)."""
    return sum(t.elements for t in model.tensors if t.is_constant)


def same_padding(in_size: int, filter_size: int, stride: int, dilation: int, out_size: int) -> int:
    """ComputePaddingWithOffset: the padding before (the extra odd pixel goes after)."""
    effective = (filter_size - 1) * dilation + 1
    return max((out_size - 1) * stride + effective - in_size, 0) // 2


def latency_estimate_ms(model: Model, board: "Board", kernels: str | None = None,
                        operators: Collection[int] | None = None, at_mhz: float | None = None) -> float:
    """The board's latency estimate for a model: each layer's work at the board profile's cycles
    per unit for its operator (Board.estimate_us), summed.

    Args:
        model: the model.
        board: the board whose latency table is read.
        kernels: which of the profile's tables (default its own).
        operators: the indices of the operators that run (default every one of the main graph).
        at_mhz: the clock those cycles run at (default the board's own; another board's
            table may stand in for a board without one).
    """
    us = sum(board.estimate_us(layer.op, layer.work, kernels, _elements(layer.output_shape))
             for layer in layer_costs(model) if operators is None or layer.index in operators)
    return us / 1000 if at_mhz is None else us * board.cpu_mhz / at_mhz / 1000
