"""The C engine's constants as data, for a firmware that reads them from a model slot
(`render --engine c --model-partition`): the code keeps each layer's shapes and order of work
(its plan), and a model image carries what another training of the same layers changes, its
weights, biases, requantization, tables and quantization offsets, in one block (`pack`) that
the generated code reads in place. Pure: bytes and offsets, nothing written.

A field of a layer's parameters (td_kernels.h) is one of:
- an array (weights, biases, per-channel requantization, tables): 16-byte aligned in the block;
- a number set by the quantization (NUMERIC, or an embedded td_requant "rq"): 4-byte aligned;
- a shape or an order of work: compiled into the code, and part of the plan's hash.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import astuple, dataclass

import numpy as np

from tinydeploy.codegen.cengine.lowering import Call, Lowered

# The quantization's numbers among the kernels' parameters (td_kernels.h); every other scalar
# field is a shape or a choice of the order of work.
NUMERIC = frozenset({"in_offset", "out_offset", "act_min", "act_max", "in_zero_point", "out_zero_point", "value"})
REQUANT = struct.Struct("<iihbb")  # td_requant: multiplier, round_offset, left, right, fast_shift
assert REQUANT.size == 12
ALIGN = 16
_DTYPES = {"int8_t": "<i1", "int32_t": "<i4"}


def kind(call: Call, name: str, value: str) -> str:
    """'array', 'requant' (an embedded td_requant), 'numeric' or 'structural'."""
    if any(array.name == value for array in call.arrays):
        return "array"
    if name == "rq":
        return "requant"
    return "numeric" if name in NUMERIC else "structural"


def _array_bytes(array) -> bytes:
    if array.ctype == "td_requant":
        return b"".join(REQUANT.pack(*(int(v) for v in row)) for row in array.values)
    return np.asarray(array.values).astype(np.int64).astype(_DTYPES[array.ctype]).tobytes()


def _requant_bytes(value: str) -> bytes:
    return REQUANT.pack(*(int(v) for v in value.strip("{}").split(",")))


@dataclass(frozen=True)
class Constants:
    """The block and where each value is: offsets[(index in Lowered.members, field name)] in bytes."""
    data: bytes
    offsets: dict[tuple[int, str], int]

    @property
    def size(self) -> int:
        return len(self.data)


def pack(lowered: Lowered) -> Constants:
    """Every call's arrays (16-byte aligned), then its numbers (int32 each) and embedded
    td_requant (12 bytes), in the order of the calls."""
    block = bytearray()
    offsets: dict[tuple[int, str], int] = {}

    def place(index: int, name: str, raw: bytes, align: int) -> None:
        block.extend(bytes(-len(block) % align))
        offsets[(index, name)] = len(block)
        block.extend(raw)

    for index, call in enumerate(lowered.members):
        if call.view:
            continue
        arrays = {array.name: array for array in call.arrays}
        for name, value in call.fields:
            if kind(call, name, value) == "array":
                place(index, name, _array_bytes(arrays[value]), ALIGN)
        for name, value in call.fields:
            what = kind(call, name, value)
            if what == "numeric":
                place(index, name, struct.pack("<i", int(value)), 4)
            elif what == "requant":
                place(index, name, _requant_bytes(value), 4)
    block.extend(bytes(-len(block) % ALIGN))
    return Constants(bytes(block), offsets)


def plan_sha256(lowered: Lowered) -> str:
    """The plan without its constants: each call's kernel, its shapes and orders of work (with
    their values), the names and kinds of its other fields, its arrays' types and sizes, its
    tensors, a row-fused call's parts and schedule, the arena's offsets and the constants' layout. Two models with the same hash run
    on the same generated code, each with its own constants."""
    def structure(call: Call) -> list:
        fields = [[name, value if kind(call, name, value) == "structural" else kind(call, name, value)]
                  for name, value in call.fields]
        return [call.kernel, call.struct, fields, [[a.name, a.ctype, list(a.values.shape)] for a in call.arrays],
                call.inputs, call.output, call.view, call.in_place, call.scratch]

    calls = []
    for call in lowered.calls:  # a row-fused call with its parts and how they run
        calls.append(structure(call) + ([[structure(p) for p in call.parts], astuple(call.fusion)]
                                        if call.parts else []))
    packed = pack(lowered)
    plan = [lowered.plan.size, sorted(lowered.plan.offsets.items()), sorted(lowered.plan.scratch.items()),
            packed.size, sorted([list(k), v] for k, v in packed.offsets.items())]
    text = json.dumps([calls, plan], separators=(",", ":"), default=int)
    return hashlib.sha256(text.encode()).hexdigest()
