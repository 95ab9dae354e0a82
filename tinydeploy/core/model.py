"""Reading a .tflite flatbuffer into plain Python objects.

The parsing is done by the flatbuffer schema bindings that ship with the
``tflite-micro`` package (generated from TFLite's schema.fbs), so tinydeploy
never hand-decodes the format and reading a model does not import TensorFlow.
"""

from __future__ import annotations

import hashlib
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
        code = model_t.operatorCodes[op_t.opcodeIndex]
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
        if not model_t.subgraphs:
            raise ValueError("the model has no subgraph")
        main = model_t.subgraphs[0]
        buffers = model_t.buffers or []
        tensors = []
        for index, t in enumerate(main.tensors or []):
            buffer = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
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
        for op in operators:
            for i in op.inputs + op.outputs:
                if i >= len(tensors):
                    raise ValueError(f"operator {op.index} refers to tensor {i} of {len(tensors)}")
        for i in graph_inputs + graph_outputs:
            if not 0 <= i < len(tensors):
                raise ValueError(f"graph input/output refers to tensor {i} of {len(tensors)}")
    except BadInput:
        raise
    except Exception as exc:  # any decoding failure means a corrupt file
        raise BadInput(f"{path}: not a readable TFLite flatbuffer (truncated or corrupt: {exc})") from exc
    return Model(path=path, data=bytes(data), tensors=tuple(tensors), operators=tuple(operators),
                 inputs=graph_inputs, outputs=graph_outputs, other_subgraph_ops=tuple(others))


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
