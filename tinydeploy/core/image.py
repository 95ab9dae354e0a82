"""The model image: a model packed for a flash slot (`tinydeploy package`), and the
compatibility contract between an image and the firmware that is to run it.

An image is a small versioned header, then the model (a .tflite flatbuffer), with a CRC-32
over the whole image. The header's fixed part is plain little-endian fields, so that the
firmware (firmware/td_slots.c) reads it without a parser; the labels and other text
follow as one JSON block. Layout (FORMAT_VERSION 1, offsets in bytes):

    0  magic "TDMODEL\\0"      8  format version (u16)   10 reserved (u16, 0)
    12 header bytes (u32, the model's offset, a multiple of 16)
    16 image bytes (u32)      20 model bytes (u32)
    24 CRC-32 (u32, IEEE, zlib's) of the whole image with these four bytes zero
    28 arena entries (u32)    32 model sha256 (32 raw bytes)
    64 semantic version (32 bytes, NUL padded)
    96 input rank, output rank, input dtype, output dtype (u8 each; dtype 1 int8, 2 uint8, 3 other)
    100 input dims (4 x i32)  116 output dims (4 x i32)
    132 input scale (f32), input zero point (i32), output scale (f32), output zero point (i32)
    148 operators (u32)       152 JSON bytes (u32)
    156 plan sha256 (32 bytes; the C engine's plan without its weights, zeros when not lowered)
    188 C engine arena (u32, its static plan; 0 when not lowered)
    192 operator names (32 bytes each, NUL padded), then arena entries (24-byte kernel
        library name, u32 bytes), then the JSON block ({"labels", "version", ...}), zero
        padding to a multiple of 16, then the model.

Format 2 adds, after the model and zero padding to a multiple of 16, the C engine's constants
(tinydeploy.codegen.cengine.constants: weights, biases and requantization the C engine's
code reads from the slot). They run to the image's end: an image has them when its image
bytes exceed header + model bytes. Format 1 images (none) are still read.

The contract (``firmware_contract``) is what a rendered firmware registers: its operators,
its arena and kernel library, its input and output, its engine (and for the C engine its
plan's hash). ``problems`` says why an image does not fit one, in the words the firmware uses
at boot.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tinydeploy.core.errors import BadInput

MAGIC = b"TDMODEL\0"
FORMAT_VERSION = 2
FIXED = struct.Struct("<8sHHIIIII32s32sBBBB4i4ififiII32sI")
assert FIXED.size == 192
OP_NAME_BYTES = 32
ARENA_ENTRY = struct.Struct("<24sI")
CRC_OFFSET = 24
ALIGN = 16
VERSION_BYTES = 32
DTYPES = {"int8": 1, "uint8": 2}
# Semantic versioning 2.0.0 (semver.org), at most 31 characters so it fits the header with its NUL.
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")


def crc32(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected, as zlib and td_slots.c compute it)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def check_version(version: str, option: str = "--version") -> str:
    """A semantic version string (MAJOR.MINOR.PATCH[-pre][+build]) that fits the header."""
    if not isinstance(version, str) or not SEMVER.fullmatch(version) or len(version.encode()) >= VERSION_BYTES:
        raise BadInput(f"{option} {version!r}: not a semantic version of at most {VERSION_BYTES - 1} characters "
                       "(MAJOR.MINOR.PATCH, e.g. 1.2.0 or 2.0.0-rc.1)")
    return version


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int

    def to_dict(self) -> dict:
        return {"shape": list(self.shape), "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class Header:
    """What an image says about its model."""
    version: str
    model_sha256: str
    ops: tuple[str, ...]
    arena: dict[str, int]  # kernel library -> arena bytes the model needs with it (costs.figures)
    input: TensorSpec
    output: TensorSpec
    labels: tuple[str, ...] = ()
    plan_sha256: str | None = None  # the C engine's plan (no weights), when the model lowers to it
    c_arena_bytes: int | None = None
    format_version: int = FORMAT_VERSION
    c_constants_bytes: int = 0  # the C engine's constants after the model (format 2; set when read)
    extra: dict = field(default_factory=dict)  # the JSON block's other keys

    def to_dict(self) -> dict:
        return {"format_version": self.format_version, "version": self.version, "model_sha256": self.model_sha256,
                "ops": list(self.ops), "arena": dict(self.arena), "input": self.input.to_dict(),
                "output": self.output.to_dict(), "labels": list(self.labels), "plan_sha256": self.plan_sha256,
                "c_arena_bytes": self.c_arena_bytes, "c_constants_bytes": self.c_constants_bytes}


@dataclass(frozen=True)
class Image:
    header: Header
    model: bytes
    header_bytes: int
    crc: int
    constants: bytes = b""  # the C engine's (format 2), b"" when the image has none

    @property
    def size(self) -> int:
        return constants_offset(self.header_bytes, len(self.model)) + len(self.constants) if self.constants \
            else self.header_bytes + len(self.model)


def constants_offset(header_bytes: int, model_bytes: int) -> int:
    """Where an image's C engine constants start: after the model, on a 16-byte boundary."""
    return header_bytes + -(-model_bytes // ALIGN) * ALIGN


def _fixed_str(text: str, size: int, what: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) >= size:
        raise BadInput(f"{what} {text!r} is longer than {size - 1} bytes")
    return raw.ljust(size, b"\0")


def _dims(shape, what: str) -> list[int]:
    if len(shape) > 4:
        raise BadInput(f"the model's {what} has {len(shape)} dimensions; an image holds at most 4")
    return list(shape) + [0] * (4 - len(shape))


def pack(header: Header, model: bytes, constants: bytes = b"") -> bytes:
    """The image's bytes: header, model, the C engine's constants (if any), CRC."""
    if hashlib.sha256(model).hexdigest() != header.model_sha256:
        raise BadInput("the header's model sha256 is not the model's")
    if constants and header.format_version < 2:
        raise BadInput(f"image format {header.format_version} holds no C engine constants (format 2 does)")
    ops = b"".join(_fixed_str(op, OP_NAME_BYTES, "operator name") for op in header.ops)
    arena = b"".join(ARENA_ENTRY.pack(_fixed_str(lib, 24, "kernel library"), int(n)) for lib, n in header.arena.items())
    text = json.dumps({**header.extra, "version": header.version, "labels": list(header.labels)},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    body = ops + arena + text
    header_bytes = -(-(FIXED.size + len(body)) // ALIGN) * ALIGN
    tail = b""
    if constants:
        tail = bytes(constants_offset(header_bytes, len(model)) - header_bytes - len(model)) + constants
    image_bytes = header_bytes + len(model) + len(tail)
    fixed = FIXED.pack(MAGIC, header.format_version, 0, header_bytes, image_bytes, len(model), 0, len(header.arena),
                       bytes.fromhex(header.model_sha256), _fixed_str(header.version, VERSION_BYTES, "version"),
                       len(header.input.shape), len(header.output.shape), DTYPES.get(header.input.dtype, 3),
                       DTYPES.get(header.output.dtype, 3), *_dims(header.input.shape, "input"),
                       *_dims(header.output.shape, "output"), header.input.scale, header.input.zero_point,
                       header.output.scale, header.output.zero_point, len(header.ops), len(text),
                       bytes.fromhex(header.plan_sha256) if header.plan_sha256 else bytes(32),
                       header.c_arena_bytes or 0)
    image = bytearray((fixed + body).ljust(header_bytes, b"\0") + model + tail)
    struct.pack_into("<I", image, CRC_OFFSET, crc32(bytes(image)))
    return bytes(image)


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def read_header(data: bytes, where: str = "image") -> tuple[Header, int, int]:
    """(header, header bytes, image bytes) from an image's first bytes, without its CRC check.

    Raises:
        BadInput: bad magic, a newer format version, truncated or inconsistent sizes.
    """
    if len(data) < len(MAGIC) + 2 or data[:len(MAGIC)] != MAGIC:
        shown = data[:8].hex() or "nothing"
        raise BadInput(f"{where}: not a tinydeploy model image (bad magic: starts with {shown}, expected "
                       f"{MAGIC.hex()}); make one with `tinydeploy package MODEL --version X --out model.bin`")
    version = struct.unpack_from("<H", data, len(MAGIC))[0]
    if version > FORMAT_VERSION:
        raise BadInput(f"{where}: image format {version} was made by a newer tinydeploy (this one reads format "
                       f"{FORMAT_VERSION} and older); update tinydeploy, or package the model with this one")
    if version < 1:
        raise BadInput(f"{where}: image format {version} is not a format tinydeploy ever wrote")
    if len(data) < FIXED.size:
        raise BadInput(f"{where}: truncated: {len(data)} bytes, less than the {FIXED.size}-byte header")
    (_, fmt, _, header_bytes, image_bytes, model_bytes, _, arena_count, sha, ver, in_rank, out_rank, in_type,
     out_type, *rest) = FIXED.unpack_from(data)
    in_dims, out_dims = rest[0:4], rest[4:8]
    in_scale, in_zero, out_scale, out_zero, op_count, json_bytes, plan, c_arena = rest[8:]
    body = op_count * OP_NAME_BYTES + arena_count * ARENA_ENTRY.size + json_bytes
    constants = 0
    if fmt >= 2 and image_bytes > header_bytes + model_bytes:
        constants = image_bytes - constants_offset(header_bytes, model_bytes)
    if (header_bytes % ALIGN or header_bytes < FIXED.size + body or in_rank > 4 or out_rank > 4
            or image_bytes != header_bytes + model_bytes and constants <= 0):
        raise BadInput(f"{where}: inconsistent header (header {header_bytes} B, image {image_bytes} B, model "
                       f"{model_bytes} B, {op_count} operators, {arena_count} arena entries)")
    if len(data) < header_bytes:
        raise BadInput(f"{where}: truncated: {len(data)} bytes, the header alone is {header_bytes}")
    at = FIXED.size
    ops = tuple(_cstr(data[at + i * OP_NAME_BYTES: at + (i + 1) * OP_NAME_BYTES]) for i in range(op_count))
    at += op_count * OP_NAME_BYTES
    arena = {}
    for _ in range(arena_count):
        name, need = ARENA_ENTRY.unpack_from(data, at)
        arena[_cstr(name)] = need
        at += ARENA_ENTRY.size
    try:
        extra = json.loads(data[at:at + json_bytes].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(f"{where}: the header's JSON block is unreadable ({exc})") from exc
    if not isinstance(extra, dict):
        raise BadInput(f"{where}: the header's JSON block is not an object")
    names = {v: k for k, v in DTYPES.items()}
    header = Header(
        version=_cstr(ver), model_sha256=sha.hex(), ops=ops, arena=arena,
        input=TensorSpec(tuple(in_dims[:in_rank]), names.get(in_type, "other"), in_scale, in_zero),
        output=TensorSpec(tuple(out_dims[:out_rank]), names.get(out_type, "other"), out_scale, out_zero),
        labels=tuple(str(x) for x in extra.pop("labels", []) or []),
        plan_sha256=plan.hex() if any(plan) else None, c_arena_bytes=c_arena or None, format_version=fmt,
        c_constants_bytes=constants, extra={k: v for k, v in extra.items() if k != "version"})
    return header, header_bytes, image_bytes


def parse(data: bytes, where: str = "image") -> Image:
    """An image, checked: magic, format version, sizes, CRC and the model's sha256.

    Raises:
        BadInput: naming the first fault (bad magic, newer format, truncated, bad checksum, ...).
    """
    header, header_bytes, image_bytes = read_header(data, where)
    if len(data) < image_bytes:
        raise BadInput(f"{where}: truncated: {len(data)} of its {image_bytes} bytes")
    if len(data) > image_bytes:
        raise BadInput(f"{where}: {len(data) - image_bytes} bytes after the image's end ({image_bytes} bytes)")
    stored = struct.unpack_from("<I", data, CRC_OFFSET)[0]
    zeroed = data[:CRC_OFFSET] + bytes(4) + data[CRC_OFFSET + 4:]
    actual = crc32(zeroed)
    if actual != stored:
        raise BadInput(f"{where}: bad checksum: CRC-32 0x{actual:08x}, the header says 0x{stored:08x} "
                       "(the image is corrupt)")
    model = data[header_bytes:header_bytes + struct.unpack_from("<I", data, 20)[0]]
    if hashlib.sha256(model).hexdigest() != header.model_sha256:
        raise BadInput(f"{where}: the model's sha256 is not the header's")
    constants = data[image_bytes - header.c_constants_bytes:] if header.c_constants_bytes else b""
    return Image(header, model, header_bytes, stored, constants)


def load(path, option: str = "") -> tuple[bytes, Image]:
    """A model image file's bytes and the image, checked (parse). option: the flag that named
    the file, for the messages (e.g. "--model")."""
    p = Path(path)
    named = f"{option} {p}" if option else str(p)
    if not p.is_file():
        raise BadInput(f"{named}: no such model image")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BadInput(f"{named}: can't read it ({exc.strerror})") from exc
    return data, parse(data, str(p))


# -- the compatibility contract ------------------------------------------------------------

def firmware_contract(engine: str, ops, arena_bytes: int, kernels: str | None, input: TensorSpec,
                      output: TensorSpec, plan_sha256: str | None = None) -> dict:
    """What a firmware registers, as its tinydeploy.json keeps it ("model_contract")."""
    return {"engine": engine, "ops": sorted(set(ops)), "arena_bytes": int(arena_bytes), "kernels": kernels,
            "input": input.to_dict(), "output": output.to_dict(), "plan_sha256": plan_sha256}


def _shape(shape, times: str = "×") -> str:
    return times.join(str(d) for d in shape) or "scalar"


def problems(header: Header, contract: dict, device: bool = False) -> list[str]:
    """Why an image's model cannot run on a firmware with this contract ([] when it fits).
    device: in the firmware's ASCII words (x, !=), as it prints them over serial."""
    times, differs = ("x", "!=") if device else ("×", "≠")
    found = []
    registered = set(contract.get("ops") or ())
    for op in sorted(set(header.ops) - registered):
        found.append(f"op {op} not registered")
    plan = contract.get("plan_sha256")
    if plan:  # the C engine: its code is the plan; only the weights may change
        if header.plan_sha256 != plan:
            found.append(f"plan {(header.plan_sha256 or 'none')[:12]} {differs} the firmware's {plan[:12]} (the C engine "
                         "keeps its code: only a model with the same layers and shapes fits)")
        elif not header.c_constants_bytes:
            found.append("the image holds no C engine constants (image format 2 does: package the model again)")
        need = header.c_arena_bytes
    else:
        kernels = contract.get("kernels") or "reference"
        need = header.arena.get(kernels)
        if need is None:
            found.append(f"the image has no arena figure for the {kernels} kernels "
                         f"(it has: {', '.join(header.arena) or 'none'})")
    have = contract.get("arena_bytes")
    if need is not None and have is not None and need > have:
        found.append(f"needs {need:,} B of arena, firmware has {have:,}")
    for role, spec in (("input", header.input), ("output", header.output)):
        want = contract.get(role) or {}
        if want and list(spec.shape) != list(want.get("shape", [])):
            found.append(f"{role} {_shape(spec.shape, times)} {differs} {_shape(want.get('shape', []), times)}")
        elif want and spec.dtype != want.get("dtype"):
            found.append(f"{role} {spec.dtype} {differs} {want.get('dtype')}")
    return found


def check_fits(header: Header, contract: dict, where: str = "image", device: bool = False) -> None:
    """Raise BadInput listing every reason the image does not fit the firmware."""
    found = problems(header, contract, device)
    if found:
        raise BadInput(f"{where} (model {header.version}) does not fit the firmware: " + "; ".join(found))


# -- the A/B state -------------------------------------------------------------------------
# One 16-byte record at the start of each of the state partition's two sectors: the record with
# the higher sequence number and a good CRC holds. A new record goes to the other sector, so a
# write cut by a reset leaves the old record standing (as ESP-IDF's otadata does).
STATE = struct.Struct("<4sIBBBB")  # magic, sequence, active slot, trial, last good slot, reserved; then CRC-32
STATE_MAGIC = b"TDAB"
STATE_BYTES = STATE.size + 4
SLOTS = ("a", "b")
NO_SLOT = 0xFF


@dataclass(frozen=True)
class SlotState:
    """Which slot boots, whether it is on trial (committed but not yet proven by a boot check and
    a first inference), and the last slot that was proven good (None before any)."""
    sequence: int
    active: str
    trial: bool
    last_good: str | None

    def next(self, active: str, trial: bool, last_good: str | None) -> "SlotState":
        return SlotState(self.sequence + 1, active, trial, last_good)


def pack_state(state: SlotState) -> bytes:
    body = STATE.pack(STATE_MAGIC, state.sequence, SLOTS.index(state.active), int(state.trial),
                      SLOTS.index(state.last_good) if state.last_good else NO_SLOT, 0)
    return body + struct.pack("<I", crc32(body))


def unpack_state(raw: bytes) -> SlotState | None:
    """A state record, or None for an erased, torn or foreign one."""
    if len(raw) < STATE_BYTES:
        return None
    body, (crc,) = raw[:STATE.size], struct.unpack_from("<I", raw, STATE.size)
    magic, sequence, active, trial, last_good, _ = STATE.unpack(body)
    if magic != STATE_MAGIC or crc != crc32(body) or active > 1 or trial > 1 or last_good not in (0, 1, NO_SLOT):
        return None
    return SlotState(sequence, SLOTS[active], bool(trial), None if last_good == NO_SLOT else SLOTS[last_good])


def current_state(sectors: list[bytes]) -> tuple[SlotState | None, int]:
    """(the state that holds, the sector index the next record goes to) from both sectors."""
    states = [unpack_state(s) for s in sectors]
    valid = [(s.sequence, i) for i, s in enumerate(states) if s is not None]
    if not valid:
        return None, 0
    _, index = max(valid)
    return states[index], 1 - index
