"""Shape arithmetic folded at generation time.

A converter that did not know the batch size computes reshape targets at run time: SHAPE of
a tensor, STRIDED_SLICE of that, PACK with constants, then RESHAPE. Every shape in the
flatbuffer is static, so those results are constants. They are computed here; operators
whose results only feed shape inputs are dropped, and each folded RESHAPE target is checked
against the static output shape it must describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinydeploy.core.model import Model, Operator, constant_values

# Operators whose second input is a shape (its values only say what the output shape is).
SHAPE_INPUTS = {"RESHAPE": 1}


@dataclass(frozen=True)
class Folded:
    values: dict  # tensor index -> its constant value, for every tensor computed here
    dropped: frozenset  # operator indices with no run-time work left


def _shape(model: Model, op: Operator, inputs) -> np.ndarray:
    return np.array(model.tensors[op.inputs[0]].shape, dtype=np.int32)


def _strided_slice(model: Model, op: Operator, inputs) -> np.ndarray | None:
    x, begin, end, strides = inputs
    o = op.options
    if o.get("ellipsis_mask") or o.get("new_axis_mask") or len(begin) != x.ndim:
        return None
    index = []
    for d in range(x.ndim):
        b, e, s = int(begin[d]), int(end[d]), int(strides[d])
        if o.get("offset"):
            e = b + e
        if o.get("shrink_axis_mask", 0) >> d & 1:
            index.append(b)
            continue
        index.append(slice(None if o.get("begin_mask", 0) >> d & 1 else b,
                           None if o.get("end_mask", 0) >> d & 1 else e, s))
    return np.asarray(x[tuple(index)])


def _pack(model: Model, op: Operator, inputs) -> np.ndarray:
    return np.stack([np.asarray(v) for v in inputs], axis=op.options.get("axis", 0))


def _concatenation(model: Model, op: Operator, inputs) -> np.ndarray:
    return np.concatenate([np.atleast_1d(v) for v in inputs], axis=op.options.get("axis", 0))


_EVALUATE = {"SHAPE": _shape, "STRIDED_SLICE": _strided_slice, "PACK": _pack, "CONCATENATION": _concatenation}


def fold(model: Model) -> Folded:
    """The shape arithmetic of the main graph, computed (module docstring)."""
    values: dict[int, np.ndarray] = {}
    computed: list[Operator] = []
    for op in model.operators:
        if op.name not in _EVALUATE or any(model.tensors[t].dtype not in ("INT32", "INT64") for t in op.outputs):
            continue
        inputs = []
        for position, t in enumerate(op.inputs):
            if op.name == "SHAPE" and position == 0:
                inputs.append(None)  # only its static shape is read
            elif t in values:
                inputs.append(values[t])
            elif t >= 0 and model.tensors[t].is_constant:
                inputs.append(constant_values(model, t))
            else:
                break
        else:
            try:
                result = _EVALUATE[op.name](model, op, inputs)
            except (IndexError, ValueError):
                result = None
            if result is not None:
                values[op.outputs[0]] = result
                computed.append(op)
    readers: dict[int, list[tuple[Operator, int]]] = {}
    for op in model.operators:
        for position, t in enumerate(op.inputs):
            readers.setdefault(t, []).append((op, position))
    dropped: set[int] = set()
    for op in reversed(computed):  # consumers come later in the graph, so they are decided first
        uses = readers.get(op.outputs[0], [])
        if op.outputs[0] not in model.outputs and all(
                reader.index in dropped or SHAPE_INPUTS.get(reader.name) == position for reader, position in uses):
            dropped.add(op.index)
    return Folded(values, frozenset(dropped))


def target_mismatch(model: Model, op: Operator, folded: Folded) -> str | None:
    """Why a folded RESHAPE target disagrees with the op's static output shape, or None."""
    position = SHAPE_INPUTS.get(op.name)
    if position is None or position >= len(op.inputs) or op.inputs[position] not in folded.values:
        return None
    target = [int(v) for v in np.asarray(folded.values[op.inputs[position]]).reshape(-1)]
    shape = list(model.tensors[op.outputs[0]].shape)
    if target.count(-1) == 1:
        known = int(np.prod([v for v in target if v != -1]))
        target[target.index(-1)] = model.tensors[op.inputs[0]].elements // max(known, 1)
    return None if target == shape else f"its computed shape {target} is not its output's {shape}"
