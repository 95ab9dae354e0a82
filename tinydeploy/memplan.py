"""Static memory planning for the C engine: one arena, a fixed offset per buffer.

A buffer holds one activation tensor or several that share memory: a RESHAPE's
output is a view of its input, and an element-wise op (ADD, QUANTIZE) may write
over an input it is the last reader of. Each buffer lives from the step that
writes it to the last step that reads it; graph inputs are written before
step 0 and graph outputs are read after the last step. Buffers are placed
largest first at the lowest offset that overlaps no buffer alive at the same
time (a greedy first fit, computed once in Python, never on the board).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALIGN = 4  # bytes; every offset is a multiple of this


@dataclass
class Buffer:
    tensors: list[int]
    size: int
    first: int
    last: int
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class Step:
    """What the planner needs to know about one operator."""
    inputs: list[int]          # activation tensors read
    output: int                # the activation tensor written
    view_of: int | None = None  # the output is a view of this input (RESHAPE)
    in_place: bool = False     # element-wise: the output may take the place of an input read here last
    scratch: int = 0           # working bytes needed during this step only


@dataclass
class Plan:
    offsets: dict[int, int]       # tensor -> byte offset in the arena
    size: int                     # arena bytes
    scratch: dict[int, int] = field(default_factory=dict)  # step -> offset of its scratch
    buffers: list[Buffer] = field(default_factory=list)
    peak_live: int = 0            # largest sum of live buffer sizes (this plan's own lower bound)

    def shares(self, a: int, b: int) -> bool:
        return self.offsets[a] == self.offsets[b]


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan(steps: list[Step], sizes: dict[int, int], graph_inputs: list[int], graph_outputs: list[int]) -> Plan:
    """Place every activation tensor in one arena.

    Args:
        steps: the operators in execution order.
        sizes: bytes of each activation tensor.
        graph_inputs, graph_outputs: tensors the caller writes before / reads after the run.

    Returns:
        The plan: an offset for every tensor in sizes and for every step's scratch.
    """
    sizes = dict(sizes)
    owner: dict[int, Buffer] = {}
    buffers: list[Buffer] = []
    last_read: dict[int, int] = {}
    for index, step in enumerate(steps):
        for t in step.inputs:
            last_read[t] = index
    end = len(steps)
    for t in graph_outputs:
        last_read[t] = end

    def new_buffer(t: int, first: int) -> None:
        buffer = Buffer([t], sizes[t], first, max(first, last_read.get(t, first)))
        owner[t] = buffer
        buffers.append(buffer)

    for t in graph_inputs:
        new_buffer(t, -1)
    for index, step in enumerate(steps):
        target = None
        if step.view_of is not None and step.view_of in owner and sizes[step.view_of] == sizes[step.output]:
            target = owner[step.view_of]
        elif step.in_place:
            for t in step.inputs:
                candidate = owner.get(t)
                if (candidate is not None and sizes[t] == sizes[step.output] and candidate.last == index
                        and t not in graph_outputs):
                    target = candidate
                    break
        if target is not None:
            target.tensors.append(step.output)
            target.last = max(target.last, last_read.get(step.output, index))
            owner[step.output] = target
        else:
            new_buffer(step.output, index)
        if step.scratch:
            key = -(index + 1)  # scratch buffers get negative ids, live during their step only
            sizes[key] = step.scratch
            new_buffer(key, index)
            owner[key].last = index

    placed: list[Buffer] = []
    for buffer in sorted(buffers, key=lambda b: (-b.size, b.first)):
        offset = 0
        for other in sorted((p for p in placed if p.overlaps_in_time(buffer)), key=lambda p: p.offset):
            if offset + buffer.size <= other.offset:
                break
            offset = max(offset, _align(other.offset + other.size))
        buffer.offset = offset
        placed.append(buffer)
    size = _align(max((b.offset + b.size for b in buffers), default=0))
    peak = 0
    for step_index in range(-1, end + 1):
        peak = max(peak, sum(b.size for b in buffers if b.first <= step_index <= b.last))
    offsets = {t: b.offset for b in buffers for t in b.tensors if t >= 0}
    scratch = {-t - 1: b.offset for b in buffers for t in b.tensors if t < 0}
    return Plan(offsets, size, scratch=scratch, buffers=buffers, peak_live=peak)
