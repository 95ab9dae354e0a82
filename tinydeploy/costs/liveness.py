"""Tensor live ranges: from the step that writes a tensor to the last step that reads it.

Every memory figure starts from these ranges, computed here once: the activation lower
bound (below), TFLM's greedy plan (tinydeploy.costs.arena) and the C engine's static plan
(tinydeploy.costs.memplan). Steps are numbered as TFLM numbers its allocation scopes: step 0
is before the first operator (the caller writes the graph inputs there), operator k runs in
step k + 1, and the caller reads the graph outputs after the last operator, in step n + 1.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from tinydeploy.core.model import Model


def live_ranges(steps: Sequence[tuple[Iterable[int], Iterable[int]]], graph_inputs: Iterable[int],
                graph_outputs: Iterable[int]) -> dict[int, tuple[int, int]]:
    """The steps each tensor lives in.

    Args:
        steps: (tensors read, tensors written) of each operator, in execution order; negative
            indices (an optional input left out) are skipped.
        graph_inputs, graph_outputs: the tensors the caller writes before the run and reads after it.

    Returns:
        tensor -> (first, last) steps, for every tensor that is written (a graph input or an
        operator's output). A tensor that is only read (a constant) has no range.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in graph_inputs:
        first.setdefault(t, 0)
        last[t] = 0
    for step, (reads, writes) in enumerate(steps, start=1):
        writes = [t for t in writes if t >= 0]
        for t in writes:
            first.setdefault(t, step)
        for t in (*reads, *writes):
            if t >= 0:
                last[t] = step
    after = len(steps) + 1
    for t in graph_outputs:
        first.setdefault(t, after)
        last[t] = after
    return {t: (first[t], last[t]) for t in first}


def model_ranges(model: Model) -> dict[int, tuple[int, int]]:
    """live_ranges of the operators of a model's main graph (tensors by their index)."""
    return live_ranges([(op.inputs, op.outputs) for op in model.operators], model.inputs, model.outputs)


def peak_live(spans: Iterable[tuple[int, int, int]]) -> int:
    """The largest sum of sizes alive in one step, over (first, last, size) spans."""
    spans = list(spans)
    steps = {step for first, last, _ in spans for step in range(first, last + 1)}
    return max((sum(size for first, last, size in spans if first <= step <= last) for step in steps), default=0)


def activation_lower_bound(model: Model) -> int:
    """Bytes: the largest sum of simultaneously live activation tensors.

    A tensor is live over its range (live_ranges); variable tensors are live throughout. No
    memory planner can do better than this without splitting operators, so it bounds any
    arena's activation part.
    """
    ranges = model_ranges(model)
    for t in model.tensors:
        if t.is_variable:
            ranges[t.index] = (0, len(model.operators) + 1)
    return peak_live((first, last, model.tensors[t].nbytes) for t, (first, last) in ranges.items())
