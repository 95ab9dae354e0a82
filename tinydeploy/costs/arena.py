"""The tensor arena a board needs: TFLM's memory plan with its kernel library's scratch.

TFLM's arena holds a *head*, where the greedy memory planner places every
activation tensor and every kernel's scratch buffer for the time it lives, and
a *tail* of persistent data (the interpreter's bookkeeping and the kernels'
operator data). The host's tflite-micro package measures both with TFLM's
reference kernels and 64-bit structs (``tinydeploy.runtime.tflm``). A board differs in
two ways, and this module accounts for both:

- **scratch**: the board's kernel library may ask for scratch buffers that the
  reference kernels don't (ESP-NN on the ESP32-S3 does, per convolution). The
  head is planned again here exactly as TFLM's ``GreedyMemoryPlanner`` plans
  it, with the library's requests (``tinydeploy.costs.kernels``); replaying the plan
  with the reference kernels' requests reproduces the measured head, which a
  test checks.
- **32-bit structs**: the tail's structs hold pointers and ``size_t``s, which
  take half the room on the ESP32 (Xtensa) and RISC-V (ILP32) targets.
  ``TAIL_32BIT`` gives what each part of the tail takes there; they were
  measured on 32-bit builds of esp-tflite-micro 1.4.0's TFLM (bench/arena_model.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinydeploy.costs import liveness
from tinydeploy.costs.kernels import KernelLibrary
from tinydeploy.core.model import Model

ALIGNMENT = 16  # MicroArenaBufferAlignment()


def _align(n: int, to: int = ALIGNMENT) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class Buffer:
    """One buffer the planner places: an activation tensor or a kernel's scratch."""
    what: str
    size: int  # aligned to 16, as TFLM's CreatePlan adds it
    first: int  # allocation scopes: 0 before the first operator, operator i runs in scope i + 1
    last: int
    op: int | None = None  # the operator a scratch buffer belongs to


def buffers(model: Model, kernels: KernelLibrary) -> list[Buffer]:
    """The buffers TFLM plans for a model, in TFLM's order: the non-constant tensors
    (AllocationInfoBuilder's lifetimes), then every scratch request in the order made."""
    ranges = liveness.model_ranges(model)
    end = len(model.operators)
    scratch = [Buffer(f"{op.name} {what}", _align(size), scope, scope, op.index)
               for scope, op in enumerate(model.operators, start=1) for what, size in kernels.scratch(model, op)]
    planned = []
    for t in model.tensors:
        # Variable tensors live in TFLM's persistent tail, not in the planned head.
        if t.is_constant or t.is_variable or t.nbytes == 0 or t.index not in ranges:
            continue
        # TFLM ends the graph outputs in the last operator's scope, not after it.
        first, last = (min(step, end) for step in ranges[t.index])
        planned.append(Buffer(f"tensor {t.index}", _align(t.nbytes), first, last))
    return planned + scratch


def greedy_plan(planned: list[Buffer]) -> tuple[list[int], int]:
    """Offsets of each buffer and the head size, as TFLM's GreedyMemoryPlanner computes them.

    Largest first (ties: the later buffer first, since TFLM fills its sort array from
    the end and sorts stably); each buffer goes into the first gap, in offset order,
    among the already placed buffers whose lifetimes overlap its own.
    """
    if not planned:
        return [], 0
    order = list(reversed(range(len(planned))))
    order.sort(key=lambda i: -planned[i].size)  # stable, like TFLM's bubble sort
    placed: list[tuple[int, int]] = []  # (offset, buffer), kept in offset order
    offsets = [0] * len(planned)
    for i in order:
        want = planned[i]
        candidate = 0
        for offset, j in placed:
            other = planned[j]
            if other.first > want.last or want.first > other.last:
                continue
            if offset - candidate >= want.size:
                break
            candidate = max(candidate, offset + other.size)
        offsets[i] = candidate
        position = next((k for k, (offset, _) in enumerate(placed) if offset > candidate), len(placed))
        placed.insert(position, (candidate, i))
    return offsets, max(offsets[i] + b.size for i, b in enumerate(planned))


# The 32-bit tail, relative to the host's 64-bit measurement (tinydeploy.runtime.tflm, recording
# allocator, reference kernels). Exact parts: a TfLiteEvalTensor per tensor is 12 bytes
# instead of 24, and a NodeAndRegistration per operator 32 instead of 64 (ILP32 struct sizes).
# The rest, per kernel library, was measured: "base" is what the allocator objects, the
# recording allocator the host uses, and the interpreter's input/output tensors change;
# each operator kind's entry is what that kernel's operator data changes (its pointers
# halve; ESP-NN's kernels keep a little more). Fitted by least squares with
# bench/arena_model.py --fit on 32-bit builds of esp-tflite-micro 1.4.0 (esp-nn 1.2.3): 31
# models (random architectures of the search space, images and series, the kernel zoo of
# the tests), then tested on 16 fresh ones: every figure within 0.3% of arena_used_bytes().
# Where one kind always came with another (MEAN, SOFTMAX and base in most models), the split
# between them is arbitrary; their sum is what was measured. An operator kind not listed
# keeps its 64-bit operator data: an upper bound.
EVAL_TENSOR_SAVING = 24 - 12
NODE_SAVING = 64 - 32
TAIL_32BIT: dict[str, dict[str, int]] = {
    "reference": {
        "base": -296, "ADD": 0, "AVERAGE_POOL_2D": -3, "CONV_2D": -16, "DEPTHWISE_CONV_2D": -15,
        "EXPAND_DIMS": 2, "FULLY_CONNECTED": -47, "MAX_POOL_2D": -1, "MEAN": -159, "PACK": 4, "PAD": -137,
        "QUANTIZE": -12, "RESHAPE": 2, "SHAPE": 4, "SOFTMAX": -27, "STRIDED_SLICE": 4,
    },
    "esp-nn": {
        "base": -291, "ADD": -2, "AVERAGE_POOL_2D": -5, "CONV_2D": -16, "DEPTHWISE_CONV_2D": -17,
        "EXPAND_DIMS": 1, "FULLY_CONNECTED": -46, "MAX_POOL_2D": 0, "MEAN": -159, "PACK": 3, "PAD": -132,
        "QUANTIZE": 4, "RESHAPE": -1, "SHAPE": 3, "SOFTMAX": -9, "STRIDED_SLICE": 3,
    },
    "esp-nn-s3": {
        "base": -293, "ADD": -4, "AVERAGE_POOL_2D": 0, "CONV_2D": -13, "DEPTHWISE_CONV_2D": -11,
        "EXPAND_DIMS": -2, "FULLY_CONNECTED": -47, "MAX_POOL_2D": 0, "MEAN": -152, "PACK": 2, "PAD": -141,
        "QUANTIZE": 4, "RESHAPE": 0, "SHAPE": 2, "SOFTMAX": -19, "STRIDED_SLICE": 2,
    },
}


@dataclass(frozen=True)
class BoardArena:
    """The arena a board's firmware needs for a model, with what it is made of."""
    kernels: str
    head_bytes: int
    tail_bytes: int
    scratch: tuple[Buffer, ...]
    basis: str

    @property
    def arena_bytes(self) -> int:
        return self.head_bytes + self.tail_bytes

    @property
    def scratch_bytes(self) -> int:
        return sum(b.size for b in self.scratch)

    def to_dict(self) -> dict:
        return {"kernels": self.kernels, "arena_bytes": self.arena_bytes, "head_bytes": self.head_bytes,
                "tail_bytes": self.tail_bytes, "scratch_bytes": self.scratch_bytes,
                "scratch": [{"op": b.op, "what": b.what, "bytes": b.size} for b in self.scratch],
                "basis": self.basis}


def _tail_32bit(model: Model, host_tail: int, kernels: str, table: dict[str, dict[str, int]]) -> int:
    deltas = table.get(kernels, {})
    tail = host_tail - EVAL_TENSOR_SAVING * len(model.tensors) - NODE_SAVING * len(model.operators)
    tail += deltas.get("base", 0) + sum(deltas.get(op.name, 0) for op in model.operators)
    return _align(tail)


def board_arena(model: Model, measured, kernels: KernelLibrary, tail: dict | None = None) -> BoardArena:
    """The arena a 32-bit board needs for a model with a kernel library.

    Args:
        model: the int8 model.
        measured: the host's TFLM measurement of it (tinydeploy.runtime.tflm.measure_arena).
        kernels: the board's kernel library for the chosen framework.
        tail: per-library tail constants (default TAIL_32BIT; bench/arena_model.py fits others).

    Returns:
        Head (TFLM's plan replayed with the library's scratch) plus the 32-bit tail.
    """
    from tinydeploy.costs.kernels import library
    planned = buffers(model, kernels)
    _, head = greedy_plan(planned)
    _, reference_head = greedy_plan(buffers(model, library("reference")))
    basis = (f"TFLM's greedy plan with the {kernels.name} kernels' scratch, plus the persistent tail "
             "at 32-bit struct sizes (from the host measurement)")
    if measured.head_bytes is not None and reference_head != measured.head_bytes:
        # A kernel asks for scratch that tinydeploy.costs.kernels doesn't know: keep what the host measured.
        head += max(0, measured.head_bytes - reference_head)
        basis += f"; the host's head exceeds the replayed plan by {measured.head_bytes - reference_head} B, added"
    host_tail = measured.tail_bytes if measured.tail_bytes is not None else measured.arena_bytes - head
    tail_bytes = _tail_32bit(model, host_tail, kernels.name, TAIL_32BIT if tail is None else tail)
    return BoardArena(kernels.name, head, tail_bytes, tuple(b for b in planned if b.op is not None), basis)


def for_board(model: Model, measured, board, framework: str | None = None) -> BoardArena:
    """The arena a board's firmware needs: with the kernel library the board links for the
    framework (default: the board profile's own framework)."""
    from tinydeploy.costs.kernels import library
    return board_arena(model, measured, library(board.tflm_kernels(framework or board.framework)))


def fit_tail(rows: list[dict], models: list[Model], libraries) -> dict[str, dict[str, int]]:
    """Fit TAIL_32BIT from measurements (rows of bench/arena_model.py): for each library,
    the 32-bit tail minus the exact savings, against the host's tail, by least squares over
    a base term and a term per operator kind."""
    import numpy as np

    from tinydeploy.costs import kernels as kernel_libraries
    kinds = sorted({op for row in rows for op in row["ops"]})
    fitted = {}
    for name in libraries:
        library = kernel_libraries.library(name)
        features, targets = [], []
        for row, model in zip(rows, models):
            _, head = greedy_plan(buffers(model, library))
            measured_tail = row[name]["arena_used_bytes"] - head
            exact = (row["host64"]["tail_bytes"] - EVAL_TENSOR_SAVING * row["tensors"]
                     - NODE_SAVING * sum(row["ops"].values()))
            features.append([1.0] + [row["ops"].get(k, 0) for k in kinds])
            targets.append(measured_tail - exact)
        solution, *_ = np.linalg.lstsq(np.array(features), np.array(targets, dtype=float), rcond=None)
        fitted[name] = {"base": int(round(solution[0]))} | {k: int(round(v)) for k, v in zip(kinds, solution[1:])}
    return fitted
