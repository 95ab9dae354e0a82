"""Static memory planning for the C engine: one arena, a fixed offset per buffer.

A buffer holds one activation tensor or several that share memory: a RESHAPE's
output is a view of its input, and an element-wise op (ADD, QUANTIZE) may write
over an input it is the last reader of. Each buffer lives from the step that
writes it to the last step that reads it; graph inputs are written before
step 0 and graph outputs are read after the last step. Buffers are placed
largest first at the lowest offset that overlaps no buffer alive at the same
time (a greedy first fit, computed once in Python, never on the board).

Below the tensor level: a kernel that writes its output in order, each byte after its last
read of the input bytes below a known point (a convolution, depthwise convolution or pooling
writing rows while reading rows further down its input), declares how far past the input's
start its output may begin (Step.overlap, from tinydeploy.codegen.cengine.lowering.segment_overlap:
a negative number of bytes). Where the input's buffer dies at that step, the planner may place
the output that close, so the two share the bytes the kernel has finished reading, as
segment-level planners do (vMCU, MLSys 2024). The proof is the overlap itself: every output
byte lands on input bytes that no later read needs. A kernel that runs backwards (a pointwise
convolution in reverse pixel order, lowering.reverse_overlap) declares the opposite
(Step.above): how far past the input's start its output must begin at least, so that it may
run on over the input's tail; an output wider than its input then ends close to the input's
end instead of its start.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from tinydeploy.costs import liveness

ALIGN = 4  # bytes; every offset is a multiple of this
ORDERS = 32  # shuffled placement orders tried when segment overlaps are possible


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
    # The output may start at (input's offset + overlap) or lower, over its only input, when
    # that input is read here last: the kernel's proven segment overlap (module docstring).
    overlap: int | None = None
    # Or the output may start at (input's offset + above) or higher, over the input's tail.
    above: int | None = None


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


def plan(steps: list[Step], sizes: dict[int, int], graph_inputs: list[int], graph_outputs: list[int],
         shuffles: int = ORDERS) -> Plan:
    """Place every activation tensor in one arena.

    Args:
        steps: the operators in execution order.
        sizes: bytes of each activation tensor.
        graph_inputs, graph_outputs: tensors the caller writes before / reads after the run.
        shuffles: shuffled orders to try where segments overlap (fewer: a quicker, rougher plan).

    Returns:
        The plan: an offset for every tensor in sizes and for every step's scratch.
    """
    sizes = dict(sizes)
    owner: dict[int, Buffer] = {}
    buffers: list[Buffer] = []
    # Each tensor's last step, from liveness (which numbers from 1; here -1 is before the run).
    # Graph outputs live past the last step, so a buffer holding one is never written over.
    ranges = liveness.live_ranges([(step.inputs, [step.output]) for step in steps], graph_inputs, graph_outputs)
    last = {t: final - 1 for t, (_, final) in ranges.items()}

    def new_buffer(t: int, first: int) -> None:
        buffer = Buffer([t], sizes[t], first, last.get(t, first))
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
            target.last = max(target.last, last[step.output])
            owner[step.output] = target
        else:
            new_buffer(step.output, index)
        if step.scratch:
            key = -(index + 1)  # scratch buffers get negative ids, live during their step only
            sizes[key] = step.scratch
            new_buffer(key, index)
            owner[key].last = index

    # Segment overlaps: (output buffer, input buffer) -> how far past the input's start the
    # output may begin at most (below) and at least (above; None: no such bound), for a step
    # whose only input buffer dies at it.
    overlaps: dict[tuple[int, int], tuple[int | None, int | None]] = {}
    for index, step in enumerate(steps):
        if (step.overlap is None and step.above is None) or len(step.inputs) != 1:
            continue
        source, target = owner.get(step.inputs[0]), owner.get(step.output)
        if (source is not None and target is not None and source is not target and source.last == index
                and target.first == index and step.inputs[0] not in graph_outputs):
            overlaps[(id(target), id(source))] = (None if step.overlap is None else step.overlap // ALIGN * ALIGN,
                                                  None if step.above is None else _align(step.above))
    # Largest first (the classic first fit), in execution order (a chain of overlapping layers
    # slides down one another), and in ORDERS seeded shuffles, which find the arrangements
    # around skip connections (on the bench models, 30 shuffles found what 300 did): the
    # smallest arena is kept. Deterministic: the same model always gets the same plan.
    shuffle = random.Random(0)
    orders = [sorted(buffers, key=lambda b: (-b.size, b.first)), sorted(buffers, key=lambda b: (b.first, -b.size))]
    if overlaps:
        orders += [shuffle.sample(buffers, len(buffers)) for _ in range(shuffles)]
    size, offsets = None, None
    for order in orders:
        tried = _place(order, overlaps)
        if size is None or tried < size:
            size, offsets = tried, [b.offset for b in buffers]
    for buffer, offset in zip(buffers, offsets):
        buffer.offset = offset
    # The buffers' own bound: shared tensors count once, so it can be below the tensor-level
    # liveness.activation_lower_bound, which counts each tensor.
    peak = liveness.peak_live((b.first, b.last, b.size) for b in buffers)
    offsets = {t: b.offset for b in buffers for t in b.tensors if t >= 0}
    scratch = {-t - 1: b.offset for b in buffers for t in b.tensors if t < 0}
    return Plan(offsets, size, scratch=scratch, buffers=buffers, peak_live=peak)


Overlaps = dict[tuple[int, int], tuple[int | None, int | None]]


def _forbidden(buffer: Buffer, other: Buffer, overlaps: Overlaps) -> tuple[int, int]:
    """The open interval of offsets at which `buffer` would clash with `other`, placed and
    alive at the same time: anywhere they share a byte, unless a segment overlap allows it."""
    lo, hi = other.offset - buffer.size, other.offset + other.size
    below, above = overlaps.get((id(buffer), id(other)), (None, None))  # buffer: the output over `other`
    if below is not None:
        lo = max(lo, other.offset + below)
    if above is not None:
        hi = min(hi, other.offset + above)
    below, above = overlaps.get((id(other), id(buffer)), (None, None))  # `other`: the output over buffer
    if below is not None:
        hi = min(hi, other.offset - below)
    if above is not None:
        lo = max(lo, other.offset - above)
    return lo, hi


def _place(order: list[Buffer], overlaps: Overlaps) -> int:
    """First fit in the given order: each buffer where it grows the extent of the buffers placed
    so far least, at the lowest such offset, outside every forbidden interval of the placed
    buffers alive at the same time. Without segment overlaps that is the lowest free offset;
    with them a buffer may also go below offset 0, under the input it is written over (or an
    input under the output written over its tail), and the plan is shifted up afterwards.
    Returns the arena size."""
    placed: list[Buffer] = []
    bottom = top = 0
    for buffer in order:
        intervals = [_forbidden(buffer, other, overlaps) for other in placed if other.overlaps_in_time(buffer)]
        intervals = [(lo, hi) for lo, hi in intervals if lo < hi]
        candidates = {0, *(_align(hi) for _, hi in intervals)}
        for other in placed:  # the closest a segment overlap lets it go to a placed buffer
            below, above = overlaps.get((id(buffer), id(other)), (None, None))
            candidates |= {other.offset + bound for bound in (below, above) if bound is not None}
            _, above = overlaps.get((id(other), id(buffer)), (None, None))
            if above is not None:
                candidates.add(other.offset - above)
        free = [c for c in candidates if not any(lo < c < hi for lo, hi in intervals)]
        buffer.offset = min(free, key=lambda c: (max(top, c + buffer.size) - min(bottom, c), c < 0, abs(c)))
        bottom, top = min(bottom, buffer.offset), max(top, buffer.offset + buffer.size)
        placed.append(buffer)
    for buffer in placed:
        buffer.offset -= bottom
    return _align(top - bottom)
