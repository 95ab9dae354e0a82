"""Reading a .tflite flatbuffer into plain Python objects.

The parsing is done by the flatbuffer schema bindings that ship with the
``tflite-micro`` package (generated from TFLite's schema.fbs), so tinydeploy
never hand-decodes the format and reading a model does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

from tinydeploy.core.errors import BadInput


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


OP_NAMES = _enum_names(schema_fb.BuiltinOperator)
DTYPE_NAMES = _enum_names(schema_fb.TensorType)
_PADDING_NAMES = _enum_names(schema_fb.Padding)
_ACTIVATION_NAMES = _enum_names(schema_fb.ActivationFunctionType)

# Bytes per element; INT4 tensors are packed two to a byte.
_DTYPE_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "FLOAT64": 8, "INT32": 4, "UINT32": 4, "INT64": 8,
    "UINT64": 8, "INT16": 2, "UINT16": 2, "INT8": 1, "UINT8": 1, "BOOL": 1, "INT4": 0.5,
    "COMPLEX64": 8, "COMPLEX128": 16,
}


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int

    def to_dict(self) -> dict:
        return {"scale": list(self.scales), "zero_point": list(self.zero_points), "axis": self.axis}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    is_constant: bool
    is_variable: bool
    raw: bytes = field(default=b"", repr=False, compare=False)  # a constant tensor's buffer

    @property
    def elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        per_element = _DTYPE_BYTES.get(self.dtype)
        if per_element is None:
            raise BadInput(f"tensor '{self.name}' has type {self.dtype}, which has no fixed size")
        return int(np.ceil(self.elements * per_element))

    def describe(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.lower(),
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }


@dataclass(frozen=True)
class Operator:
    index: int
    name: str  # builtin name, e.g. CONV_2D, or the custom op's name
    version: int
    is_custom: bool
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    options: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Model:
    """A parsed .tflite model: the main subgraph's tensors and operators."""

    path: str
    data: bytes = field(repr=False)
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    other_subgraph_ops: tuple[Operator, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)
    """tinydeploy's own description stored inside the flatbuffer (see with_metadata): for
    example "labels", "frontend" and "window"; {} for a model made elsewhere."""

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The class labels that optimize stored in the model, or None."""
        labels = self.meta.get("labels")
        return tuple(labels) if labels else None

    @property
    def size_bytes(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def all_operators(self) -> tuple[Operator, ...]:
        return self.operators + self.other_subgraph_ops

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    @property
    def is_int8(self) -> bool:
        """True when inputs, outputs and every MAC op's weights are 8-bit or less."""
        return self.int8_problem is None

    @property
    def int8_problem(self) -> str | None:
        """Why the model is not fully int8, in a few words naming the first tensor at fault
        ("float model: ..." where it computes in float), or None when it is."""
        for op in self.operators:
            if op.name in ("QUANTIZE", "DEQUANTIZE"):
                continue
            for i in op.inputs + op.outputs:
                if i >= 0 and self.tensors[i].dtype in ("FLOAT32", "FLOAT16"):
                    return (f"float model: {op.name} computes in {self.tensors[i].dtype.lower()} "
                            f"(tensor '{self.tensors[i].name}')")
        for role, tensors in (("input", self.input_tensors), ("output", self.output_tensors)):
            for t in tensors:
                if t.dtype != "INT8":
                    wide = [op.name for op in self.operators if op.name not in ("QUANTIZE", "DEQUANTIZE")
                            and any(i >= 0 and self.tensors[i].dtype == "INT16" for i in op.outputs)]
                    if wide:  # 16x8 quantization: int16 activations behind float or int16 ends
                        return f"not an int8 model: {wide[0]} computes in int16 (16x8 quantization)"
                    kind = "float model" if t.dtype.startswith("FLOAT") else "not an int8 model"
                    return f"{kind}: its {role} '{t.name}' is {t.dtype.lower()}"
        return None


def _options(op_t) -> dict:
    """The builtin options that the cost model and the renderers need."""
    opts = op_t.builtinOptions
    if opts is None:
        return {}
    out = {}
    for attr, key in (("strideH", "stride_h"), ("strideW", "stride_w"),
                      ("dilationHFactor", "dilation_h"), ("dilationWFactor", "dilation_w"),
                      ("filterHeight", "filter_h"), ("filterWidth", "filter_w"),
                      ("depthMultiplier", "depth_multiplier"), ("keepDims", "keep_dims"),
                      ("beta", "beta"), ("beginMask", "begin_mask"), ("endMask", "end_mask"),
                      ("ellipsisMask", "ellipsis_mask"), ("newAxisMask", "new_axis_mask"),
                      ("shrinkAxisMask", "shrink_axis_mask"), ("offset", "offset"), ("axis", "axis")):
        if hasattr(opts, attr):
            out[key] = getattr(opts, attr)
    if hasattr(opts, "padding"):
        out["padding"] = _PADDING_NAMES.get(opts.padding, str(opts.padding))
    if hasattr(opts, "fusedActivationFunction"):
        out["activation"] = _ACTIVATION_NAMES.get(opts.fusedActivationFunction, "?")
    return out


def _decode(raw) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _operators(model_t, subgraph) -> list[Operator]:
    out = []
    for index, op_t in enumerate(subgraph.operators or []):
        code = model_t.operatorCodes[op_t.opcodeIndex]  # in range: _check_structure
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        is_custom = builtin == schema_fb.BuiltinOperator.CUSTOM
        name = _decode(code.customCode) if is_custom else OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        out.append(Operator(
            index=index, name=name, version=int(code.version or 1), is_custom=is_custom,
            inputs=tuple(int(i) for i in (op_t.inputs if op_t.inputs is not None else [])),
            outputs=tuple(int(i) for i in (op_t.outputs if op_t.outputs is not None else [])),
            options=_options(op_t),
        ))
    return out


# The largest tensor a model may describe: TFLite's tensor sizes are 32-bit, and no board holds more.
MAX_TENSOR_BYTES = (1 << 31) - 1
# A quantization scale outside this range is no real model's (activation ranges and requantization
# multipliers would overflow float32); zero is allowed for constants only (an all-zero weight channel).
SCALE_RANGE = (1e-30, 1e30)
_ZERO_POINT_RANGE = {"INT8": (-128, 127), "UINT8": (0, 255), "INT16": (-32768, 32767), "INT4": (-8, 7)}
_ANY_RANK = None
# What TFLite's kernels require of the operands that tinydeploy reads past an operator's name
# (costs, the arena model, the C engine): {operand position: allowed ranks or _ANY_RANK} for
# inputs, then outputs. An operand listed here must be present (not -1).
_CONV = ({0: (4,), 1: (4,)}, {0: (4,)})
_POOL = ({0: (4,)}, {0: (4,)})
_UNARY = ({0: _ANY_RANK}, {0: _ANY_RANK})
_BINARY = ({0: _ANY_RANK, 1: _ANY_RANK}, {0: _ANY_RANK})
OPERANDS: dict[str, tuple[dict, dict]] = {
    "CONV_2D": _CONV, "DEPTHWISE_CONV_2D": _CONV,
    "FULLY_CONNECTED": ({0: _ANY_RANK, 1: (2,)}, {0: _ANY_RANK}),
    "TRANSPOSE_CONV": ({0: (1,), 1: (4,), 2: (4,)}, {0: (4,)}),
    "MAX_POOL_2D": _POOL, "AVERAGE_POOL_2D": _POOL,
    "MEAN": _BINARY, "SUM": _BINARY, "ADD": _BINARY, "PAD": ({0: _ANY_RANK, 1: (2,)}, {0: _ANY_RANK}),
    "SOFTMAX": ({0: tuple(range(1, 9))}, {0: tuple(range(1, 9))}),
    "QUANTIZE": _UNARY, "DEQUANTIZE": _UNARY, "RESHAPE": _UNARY, "EXPAND_DIMS": _UNARY, "SQUEEZE": _UNARY,
    "SHAPE": _UNARY, "STRIDED_SLICE": ({0: _ANY_RANK, 1: (1,), 2: (1,), 3: (1,)}, {0: _ANY_RANK}),
    "PACK": ({0: _ANY_RANK}, {0: _ANY_RANK}), "CONCATENATION": ({0: _ANY_RANK}, {0: _ANY_RANK}),
}
# Window options must be at least 1 (a stride or filter of 0 divides by zero in every kernel).
_AT_LEAST_ONE = ("strideH", "strideW", "dilationHFactor", "dilationWFactor", "filterHeight", "filterWidth")


def _dims(values) -> list[int]:
    return [int(v) for v in (values if values is not None else [])]


def _check_tensor(index: int, t, buffers, file_size: int) -> list[str]:
    """What is wrong with one tensor of the main graph: its type, shape, buffer and quantization."""
    name = f"tensor {index} '{_decode(t.name)}'"
    dtype = DTYPE_NAMES.get(t.type)
    if dtype is None:
        return [f"{name}: type {t.type} is not a TFLite tensor type"]
    shape = _dims(t.shape)
    if any(d < 0 for d in shape):
        return [f"{name}: shape {shape} has a negative dimension"]
    elements = 1
    for d in shape:
        elements *= d
    per_element = _DTYPE_BYTES.get(dtype)
    problems = []
    nbytes = None if per_element is None else -(-elements * int(per_element * 2) // 2)
    if nbytes is not None and nbytes > MAX_TENSOR_BYTES:
        return [f"{name}: shape {shape} holds {nbytes} bytes, more than a TFLite tensor can ({MAX_TENSOR_BYTES})"]
    if not 0 <= t.buffer < len(buffers):
        return [f"{name}: buffer index {t.buffer} out of range (model has {len(buffers)} buffers)"]
    buffer = buffers[t.buffer]
    stored = len(buffer.data) if buffer.data is not None else 0
    if stored and nbytes is not None and stored != nbytes:
        problems.append(f"{name}: buffer {t.buffer} holds {stored} bytes but shape {shape} of {dtype.lower()} "
                        f"needs {nbytes}")
    if buffer.offset > 1 and buffer.offset + buffer.size > file_size:
        problems.append(f"{name}: buffer {t.buffer} lies at bytes {buffer.offset}..{buffer.offset + buffer.size}, "
                        f"past the end of the {file_size}-byte file")
    q = t.quantization
    scales = [] if q is None or q.scale is None else [float(v) for v in q.scale]
    if scales:
        zero_points = _dims(q.zeroPoint)
        low, high = SCALE_RANGE
        bad = [v for v in scales if not (low <= v <= high or (v == 0 and stored))]
        if bad:
            problems.append(f"{name}: quantization scale {bad[0]} is not in {low:g}..{high:g}"
                            + ("" if stored else " (zero only for constants)"))
        if len(zero_points) != len(scales):
            problems.append(f"{name}: {len(scales)} quantization scales but {len(zero_points)} zero points")
        limits = _ZERO_POINT_RANGE.get(dtype, (-(1 << 31), (1 << 31) - 1))
        outside = [z for z in zero_points if not limits[0] <= z <= limits[1]]
        if outside:
            problems.append(f"{name}: zero point {outside[0]} is outside {dtype.lower()}'s range "
                            f"{limits[0]}..{limits[1]}")
        axis = int(q.quantizedDimension)
        if len(scales) > 1 and not (0 <= axis < len(shape) and shape[axis] == len(scales)):
            problems.append(f"{name}: {len(scales)} per-channel scales on axis {axis} of shape {shape}")
    return problems


def _check_operator(where: str, op_t, model_t, tensors, shapes: list[list[int]] | None) -> list[str]:
    """What is wrong with one operator: its opcode index, its tensor indices, and (main graph) the
    operands its kernel requires (OPERANDS) and its window options."""
    codes = model_t.operatorCodes or []
    if not 0 <= op_t.opcodeIndex < len(codes):
        return [f"{where}: opcode index {op_t.opcodeIndex} out of range (model has {len(codes)} operator codes)"]
    op_name = _op_name(model_t, op_t)
    where = f"{where} ({op_name})"
    problems = []
    for role, indices, lowest in (("input", op_t.inputs, -1), ("output", op_t.outputs, 0)):
        for position, i in enumerate(_dims(indices)):
            if not lowest <= i < len(tensors):
                problems.append(f"{where} {role} {position}: tensor index {i} out of range "
                                f"(model has {len(tensors)} tensors)")
    if problems or shapes is None:
        return problems
    required = OPERANDS.get(op_name)
    if required is not None:
        for role, indices, ranks in (("input", _dims(op_t.inputs), required[0]),
                                     ("output", _dims(op_t.outputs), required[1])):
            for position, allowed in ranks.items():
                if position >= len(indices) or indices[position] < 0:
                    problems.append(f"{where}: {role} {position} is missing ({op_name} has "
                                    f"{len(indices)} {role}s)")
                elif allowed is not _ANY_RANK and len(shapes[indices[position]]) not in allowed:
                    accepted = str(allowed[0]) if len(allowed) == 1 else f"{allowed[0]} to {allowed[-1]}"
                    problems.append(f"{where} {role} {position}: tensor {indices[position]} has shape "
                                    f"{shapes[indices[position]]}; {op_name} takes rank {accepted}")
    opts = op_t.builtinOptions
    for attr in _AT_LEAST_ONE:
        if opts is not None and hasattr(opts, attr) and getattr(opts, attr) < 1:
            problems.append(f"{where}: option {attr} is {getattr(opts, attr)}; it must be at least 1")
    beta = getattr(opts, "beta", None) if opts is not None else None
    if beta is not None and not np.isfinite(beta):
        problems.append(f"{where}: option beta is {beta}")
    return problems


def _check_structure(model_t, file_size: int) -> list[str]:
    """Every structural invariant the readers of a model rely on, checked once where it is
    loaded: indices in range (opcodes, tensors, buffers), shapes non-negative and matching
    their buffers, quantization arrays of matching lengths, each operator's required
    operands present with the ranks TFLite's kernels take. Returns the problems found."""
    if not model_t.subgraphs:
        return ["the model has no subgraph"]
    buffers = model_t.buffers or []
    problems = []
    main = model_t.subgraphs[0]
    tensors = main.tensors or []
    for index, t in enumerate(tensors):
        problems += _check_tensor(index, t, buffers, file_size)
    shapes = None if problems else [_dims(t.shape) for t in tensors]
    for number, graph in enumerate(model_t.subgraphs):
        prefix = "" if number == 0 else f"subgraph {number} "
        graph_tensors = graph.tensors or []
        for index, op_t in enumerate(graph.operators or []):
            problems += _check_operator(f"{prefix}operator {index}", op_t, model_t, graph_tensors,
                                        shapes if number == 0 else None)
    for role in ("inputs", "outputs"):
        indices = _dims(getattr(main, role))
        if not indices:
            problems.append(f"the main graph has no {role}")
        for position, i in enumerate(indices):
            if not 0 <= i < len(tensors):
                problems.append(f"graph {role[:-1]} {position}: tensor index {i} out of range "
                                f"(model has {len(tensors)} tensors)")
    return problems or _check_dataflow(model_t)


def _op_name(model_t, op_t) -> str:
    code = model_t.operatorCodes[op_t.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    return OP_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _check_dataflow(model_t) -> list[str]:
    """Every tensor the main graph's operators read exists by then: a graph input, a constant, a
    variable, or the output of an earlier operator; and each tensor is written once at most."""
    main, buffers = model_t.subgraphs[0], model_t.buffers or []
    tensors = main.tensors or []

    def holds_data(i: int) -> bool:
        b = tensors[i].buffer
        return tensors[i].isVariable or (0 < b and buffers[b].data is not None and len(buffers[b].data) > 0)

    written = {i: -1 for i in _dims(main.inputs)}
    problems = []
    for index, op_t in enumerate(main.operators or []):
        where = f"operator {index} ({_op_name(model_t, op_t)})"
        for position, i in enumerate(_dims(op_t.inputs)):
            if i >= 0 and i not in written and not holds_data(i):
                problems.append(f"{where} input {position}: tensor {i} '{_decode(tensors[i].name)}' is read before "
                                "any operator writes it (and is not a graph input or a constant)")
        for i in _dims(op_t.outputs):
            if i in written:
                by = "the graph input" if written[i] < 0 else f"operator {written[i]}"
                problems.append(f"{where} output: tensor {i} '{_decode(tensors[i].name)}' is written by {by} already")
            written[i] = index
    for position, i in enumerate(_dims(main.outputs)):
        if i not in written and not holds_data(i):
            problems.append(f"graph output {position}: tensor {i} '{_decode(tensors[i].name)}' is never written")
    return problems


def parse_model(data: bytes, path: str = "<bytes>") -> Model:
    """Parse .tflite bytes.

    Args:
        data: the flatbuffer.
        path: where it came from, for messages.

    Returns:
        The parsed Model.

    Raises:
        BadInput: the bytes are empty or not a readable TFLite flatbuffer.
    """
    if not data:
        raise BadInput(f"{path}: the file is empty; expected a .tflite flatbuffer")
    if len(data) < 8 or not schema_fb.Model.ModelBufferHasIdentifier(data, 0):
        hint = " (it looks like a Keras HDF5 file; convert it first)" if data[:4] == b"\x89HDF" else ""
        raise BadInput(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier){hint}")
    try:
        model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # any decoding failure means a corrupt file
        raise BadInput(f"{path}: not a readable TFLite flatbuffer (truncated or corrupt: {exc})") from exc
    problems = _check_structure(model_t, len(data))
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise BadInput(f"{path}: a damaged TFLite model: {'; '.join(problems[:3])}{more}")
    try:
        main = model_t.subgraphs[0]
        buffers = model_t.buffers or []
        tensors = []
        for index, t in enumerate(main.tensors or []):
            buffer = buffers[t.buffer] if 0 < t.buffer else None  # buffer 0 is the empty sentinel
            has_data = buffer is not None and buffer.data is not None and len(buffer.data) > 0
            q = t.quantization
            quant = None
            if q is not None and q.scale is not None and len(q.scale) > 0:
                quant = Quantization(
                    scales=tuple(float(s) for s in q.scale),
                    zero_points=tuple(int(z) for z in (q.zeroPoint if q.zeroPoint is not None else [])),
                    axis=int(q.quantizedDimension),
                )
            tensors.append(Tensor(
                index=index, name=_decode(t.name),
                shape=tuple(int(d) for d in (t.shape if t.shape is not None else [])),
                dtype=DTYPE_NAMES.get(t.type, f"TYPE_{t.type}"),
                quantization=quant, is_constant=has_data, is_variable=bool(t.isVariable),
                raw=bytes(bytearray(buffer.data)) if has_data else b"",
            ))
        operators = _operators(model_t, main)
        others = [op for sg in model_t.subgraphs[1:] for op in _operators(model_t, sg)]
        graph_inputs = tuple(int(i) for i in (main.inputs if main.inputs is not None else []))
        graph_outputs = tuple(int(i) for i in (main.outputs if main.outputs is not None else []))
    except BadInput:
        raise
    except Exception as exc:  # any decoding failure means a corrupt file
        raise BadInput(f"{path}: not a readable TFLite flatbuffer (truncated or corrupt: {exc})") from exc
    return Model(path=path, data=bytes(data), tensors=tuple(tensors), operators=tuple(operators),
                 inputs=graph_inputs, outputs=graph_outputs, other_subgraph_ops=tuple(others),
                 meta=_read_meta(model_t, path))


# The name of tinydeploy's entry in the flatbuffer's metadata table (TFLite's schema.fbs:
# Model.metadata is a list of (name, buffer index)). Interpreters ignore unknown entries.
META_NAME = "tinydeploy"
_META_KEYS = {"labels": list, "frontend": dict, "window": list, "version": str}


def _read_meta(model_t, path: str) -> dict:
    for entry in model_t.metadata or []:
        if _decode(entry.name) != META_NAME:
            continue
        buffers = model_t.buffers or []
        if not 0 <= entry.buffer < len(buffers) or buffers[entry.buffer].data is None:
            raise BadInput(f"{path}: the '{META_NAME}' metadata points at no data")
        try:
            meta = json.loads(bytes(bytearray(buffers[entry.buffer].data)).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadInput(f"{path}: the '{META_NAME}' metadata is not JSON ({exc})") from exc
        return check_meta(meta, path)
    return {}


def check_meta(meta, where: str) -> dict:
    """The metadata dict, checked: known keys with the right JSON types, labels as strings.

    Raises:
        BadInput: naming the bad key or value and what is accepted.
    """
    if not isinstance(meta, dict):
        raise BadInput(f"{where}: tinydeploy metadata must be a JSON object, not {type(meta).__name__}")
    for key, value in meta.items():
        kind = _META_KEYS.get(key)
        if kind is None:
            continue  # a newer tinydeploy's key: kept, not used
        if not isinstance(value, kind):
            raise BadInput(f"{where}: metadata '{key}' must be a {kind.__name__}, not {value!r:.60}")
    labels = meta.get("labels", [])
    if not all(isinstance(x, str) for x in labels):
        raise BadInput(f"{where}: metadata 'labels' must be strings, got {labels!r:.80}")
    window = meta.get("window")
    if window is not None and (len(window) != 2 or not all(isinstance(d, int) and d > 0 for d in window)):
        raise BadInput(f"{where}: metadata 'window' must be [steps, channels], positive integers; got {window!r:.60}")
    return meta


def with_metadata(data: bytes, meta: dict) -> bytes:
    """The .tflite bytes with tinydeploy's metadata entry set to meta (replacing any earlier).

    Args:
        data: a .tflite flatbuffer.
        meta: plain JSON types; "labels" (class names in output order), "frontend"
            (Frontend.to_dict()), "window" ([steps, channels] of the raw window).

    Raises:
        BadInput: data is not a readable model, or meta fails check_meta().
    """
    import flatbuffers  # a dependency of tflite-micro

    check_meta(meta, "metadata")
    parse_model(data)  # refuse damaged input before rewriting it
    model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if any(getattr(b, "offset", 0) for b in model_t.buffers or []):
        raise BadInput("metadata: the model keeps its buffers outside the flatbuffer (over 2 GB); "
                       "tinydeploy cannot rewrite it")
    buffers = [_AlignedBufferT(b.data) for b in model_t.buffers or []]
    payload = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    entries = [m for m in (model_t.metadata or []) if _decode(m.name) != META_NAME]
    kept = [m for m in (model_t.metadata or []) if _decode(m.name) == META_NAME]
    if kept and 0 < kept[0].buffer < len(buffers):
        index = kept[0].buffer  # reuse the earlier entry's buffer: no orphan left behind
        buffers[index] = _AlignedBufferT(payload)
    else:
        buffers.append(_AlignedBufferT(payload))
        index = len(buffers) - 1
    entry = schema_fb.MetadataT()
    entry.name = META_NAME
    entry.buffer = index
    model_t.buffers = buffers
    model_t.metadata = entries + [entry]
    builder = flatbuffers.Builder(len(data) + payload.size + 1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


_NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
                "FLOAT32": np.float32}


def constant_values(model: Model, index: int) -> np.ndarray:
    """The values of a constant tensor, in its shape (packed INT4 is unpacked to int8).

    Raises:
        BadInput: the tensor has no data or a type tinydeploy cannot read.
    """
    tensor = model.tensors[index]
    raw = tensor.raw
    if not raw:
        raise BadInput(f"{model.path}: tensor '{tensor.name}' has no constant data")
    if tensor.dtype == "INT4":
        packed = np.frombuffer(raw, dtype=np.uint8)
        nibbles = np.stack([packed & 0x0F, packed >> 4], axis=1).reshape(-1)[:tensor.elements]
        values = np.where(nibbles > 7, nibbles.astype(np.int16) - 16, nibbles).astype(np.int8)
        return values.reshape(tensor.shape)
    if tensor.dtype not in _NUMPY_TYPES:
        raise BadInput(f"{model.path}: tensor '{tensor.name}' has type {tensor.dtype}, which tinydeploy cannot read")
    return np.frombuffer(raw, dtype=_NUMPY_TYPES[tensor.dtype]).reshape(tensor.shape)


def load_model(path: str | Path) -> Model:
    """Read and parse a .tflite file.

    Args:
        path: the file.

    Returns:
        The parsed Model.

    Raises:
        BadInput: the file is missing, unreadable, empty or not a TFLite flatbuffer.
    """
    p = Path(path)
    if not p.exists():
        raise BadInput(f"{p}: no such file")
    if not p.is_file():
        raise BadInput(f"{p}: not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BadInput(f"{p}: cannot read it ({exc.strerror})") from exc
    return parse_model(data, str(p))


# TFLite's schema.fbs declares Buffer.data with force_align: 16 (so that int32 biases and
# float weights can be read in place); the Python bindings' Pack() aligns uint8 vectors to 1.
_BUFFER_ALIGN = 16


class _AlignedBufferT(schema_fb.BufferT):
    """A Buffer that packs its data 16-byte aligned, as the TFLite converter writes it."""

    def __init__(self, data):
        super().__init__()
        self.data = None if data is None else np.asarray(data, dtype=np.uint8).reshape(-1)

    def Pack(self, builder):  # noqa: N802 (the bindings' name)
        vector = None
        if self.data is not None:
            payload = self.data.tobytes()
            builder.StartVector(1, len(payload), _BUFFER_ALIGN)
            builder.head -= len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            vector = builder.EndVector(len(payload))
        schema_fb.BufferStart(builder)
        if vector is not None:
            schema_fb.BufferAddData(builder, vector)
        return schema_fb.BufferEnd(builder)
