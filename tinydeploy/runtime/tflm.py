"""The real TFLite Micro interpreter (PyPI ``tflite-micro``), run on the host.

Every memory figure tinydeploy labels "TFLM" comes from here. The Python
package runs TFLM's C++ with its recording allocator, whose bookkeeping lives
in the arena and whose structs are 64-bit on the host, so its figures are an
upper bound for a 32-bit board.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model

# Builtin ops that TFLM's MicroMutableOpResolver can register, with the method
# that registers each. Source: tensorflow/lite/micro/micro_mutable_op_resolver.h
# in the tflite-micro repository (the Add*() methods and their BuiltinOperator).
RESOLVER_METHODS: dict[str, str] = {
    "ABS": "AddAbs", "ADD": "AddAdd", "ADD_N": "AddAddN", "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin", "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd", "CAST": "AddCast", "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation", "CONV_2D": "AddConv2D", "COS": "AddCos",
    "CUMSUM": "AddCumSum", "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D", "DEQUANTIZE": "AddDequantize", "ELU": "AddElu",
    "EQUAL": "AddEqual", "EXP": "AddExp", "EXPAND_DIMS": "AddExpandDims", "FILL": "AddFill",
    "FLOOR": "AddFloor", "FLOOR_DIV": "AddFloorDiv", "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected", "GATHER": "AddGather", "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater", "GREATER_EQUAL": "AddGreaterEqual", "HARD_SWISH": "AddHardSwish",
    "IF": "AddIf", "L2_NORMALIZATION": "AddL2Normalization", "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu", "LESS": "AddLess", "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog", "LOGICAL_AND": "AddLogicalAnd", "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr", "LOGISTIC": "AddLogistic", "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "MINIMUM": "AddMinimum", "MUL": "AddMul",
    "NEG": "AddNeg", "NOT_EQUAL": "AddNotEqual", "PACK": "AddPack", "PAD": "AddPad",
    "PADV2": "AddPadV2", "PRELU": "AddPrelu", "QUANTIZE": "AddQuantize",
    "REDUCE_MAX": "AddReduceMax", "RELU": "AddRelu", "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape", "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor", "ROUND": "AddRound",
    "RSQRT": "AddRsqrt", "SHAPE": "AddShape", "SIN": "AddSin", "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd", "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit", "SPLIT_V": "AddSplitV", "SQUEEZE": "AddSqueeze", "SQRT": "AddSqrt",
    "SQUARE": "AddSquare", "STRIDED_SLICE": "AddStridedSlice", "SUB": "AddSub",
    "SVDF": "AddSvdf", "TANH": "AddTanh", "TRANSPOSE_CONV": "AddTransposeConv",
    "TRANSPOSE": "AddTranspose", "UNPACK": "AddUnpack", "ZEROS_LIKE": "AddZerosLike",
}

# No real model fits in less; the search starts here.
ARENA_SEARCH_FLOOR = 512
ARENA_SEARCH_CEILING = 64 << 20


def runtime_version() -> str:
    """The installed tflite-micro package version."""
    try:
        return metadata.version("tflite-micro")
    except metadata.PackageNotFoundError:
        return "unknown"


def unsupported_ops(model: Model) -> list[str]:
    """Names of the model's operators that TFLM cannot register, sorted, unique."""
    return sorted({op.name for op in model.all_operators if op.is_custom or op.name not in RESOLVER_METHODS})



@dataclass(frozen=True)
class ArenaMeasurement:
    """The smallest tensor arena the TFLM interpreter accepts, with its breakdown."""

    arena_bytes: int
    head_bytes: int | None  # activations, placed by the memory planner
    tail_bytes: int | None  # persistent data: eval tensors, node structs, op data
    breakdown: tuple[tuple[str, int, str], ...]  # (what, bytes, detail)
    runtime: str

    def to_dict(self) -> dict:
        return {
            "arena_bytes": self.arena_bytes,
            "head_bytes": self.head_bytes,
            "tail_bytes": self.tail_bytes,
            "breakdown": [{"what": w, "bytes": b, "detail": d} for w, b, d in self.breakdown],
            "source": f"tflite-micro {self.runtime} interpreter on this host (measured)",
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "ArenaMeasurement":
        runtime = raw.get("source", "").removeprefix("tflite-micro ").split(" ")[0]
        return cls(raw["arena_bytes"], raw.get("head_bytes"), raw.get("tail_bytes"),
                   tuple((b["what"], b["bytes"], b["detail"]) for b in raw.get("breakdown", [])), runtime)


_HEAD_TAIL = re.compile(r"Arena allocation (head|tail) (\d+) bytes")
_RECORD = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(([^)]*)\)")


def _parse_allocations(text: str):
    head = tail = None
    for which, n in _HEAD_TAIL.findall(text):
        if which == "head":
            head = int(n)
        else:
            tail = int(n)
    records = tuple((what, int(n), detail) for what, n, detail in _RECORD.findall(text))
    return head, tail, records


class TflmProcess:
    """A TFLM interpreter for one model, in a child process (see tinydeploy.runtime._tflm_worker).

    TFLM's allocator can crash the whole process for some too-small arenas (an
    unsigned underflow: "available 4294967292"), and some models abort when
    TensorFlow is loaded in the same process; here a crash ends only the child,
    and a probe that crashed counts as a failure.
    """

    # Seconds a child may take over one request before it is taken for hung (a damaged model can
    # send TFLM's kernels looping): far above what any probe or run of a board-sized model takes.
    ANSWER_TIMEOUT = 120.0

    def __init__(self, model_bytes: bytes, name: str = "the model"):
        self.name = name
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite", delete=False)
        self._file.write(model_bytes)
        self._file.close()
        self._child = None
        self.crashes = 0

    def _start(self):
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tinydeploy.runtime._tflm_worker", self._file.name],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)

    def _ask(self, request: str, timeout: float | None = None) -> str | None:
        """The child's answer, or None if it died on the request or took longer than timeout
        (default ANSWER_TIMEOUT) seconds; it is then restarted next time."""
        import select
        if self._child is None:
            self._start()
        answer = ""
        try:
            self._child.stdin.write(request + "\n")
            self._child.stdin.flush()
            ready, _, _ = select.select([self._child.stdout], [], [], timeout or self.ANSWER_TIMEOUT)
            if ready:
                answer = self._child.stdout.readline()
        except BrokenPipeError:
            pass
        if answer:
            return answer.rstrip("\n")
        self._child.kill()  # dead already, or hung
        self._child.wait()
        self._child = None
        self.crashes += 1
        return None

    def accepts(self, size: int) -> bool:
        """Does an interpreter with this arena size allocate all tensors?"""
        return self._ask(f"probe {size}") == "ok"

    def open(self, size: int) -> None:
        if self._ask(f"open {size}") != "ok":
            raise BadInput(f"{self.name}: TFLM could not set it up with a {size}-byte arena, which it accepted "
                           "before (a corrupt flatbuffer?)")

    def report(self) -> str:
        answer = self._ask("report")
        if answer is None or answer == "fail":  # set up, yet an operator fails on its inputs
            raise BadInput(f"{self.name}: TFLM " + ("crashed" if answer is None else "failed")
                           + " running it on zeros (a corrupt flatbuffer?)")
        return json.loads(answer)

    def run(self, sample: bytes) -> bytes:
        answer = self._ask("run " + sample.hex())
        if answer is None or answer == "fail":
            raise BadInput(f"{self.name}: TFLM " + ("crashed running it" if answer is None else "failed to run it")
                           + " (a corrupt flatbuffer?)")
        return bytes.fromhex(answer)

    def time_models(self, folder: str, arena_bytes: int, repeats: int) -> list[float]:
        """Median µs of one invoke of each model in folder (0.tflite, 1.tflite, ...), each on
        zeros in an interpreter of its own (arena_bytes, doubled until it fits), timed with the
        host's clock in this process's child; the interpreters are kept for the next call."""
        answer = self._ask(f"time {repeats} {arena_bytes} {folder}", timeout=10 * self.ANSWER_TIMEOUT)
        if answer is None or answer == "fail":
            raise BadInput(f"{self.name}: TFLM " + ("crashed" if answer is None else "failed")
                           + " running its operators one at a time")
        return [float(us) for us in json.loads(answer)]

    def close(self):
        if self._child is not None:
            try:
                self._child.stdin.close()
                self._child.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):  # gone, or busy (interrupted mid-request)
                self._child.kill()
                self._child.wait()
            self._child = None
        if os.path.exists(self._file.name):
            os.unlink(self._file.name)


def operator_models(model: Model) -> list[bytes]:
    """Each operator of the main graph as a model of its own: its non-constant inputs are the
    model's inputs and its outputs the model's outputs; tensors, buffers and other subgraphs
    are kept as they are (the virtual device times its layers with these)."""
    from flatbuffers import Builder
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

    models = []
    for op in model.operators:
        model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(model.data), 0)
        graph = model_t.subgraphs[0]
        graph.operators = [graph.operators[op.index]]
        graph.inputs = [i for i in op.inputs if i >= 0 and not model.tensors[i].is_constant]
        graph.outputs = list(op.outputs)
        builder = Builder(len(model.data) + 1024)
        builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
        models.append(bytes(builder.Output()))
    return models


def measure_arena(model: Model) -> ArenaMeasurement:
    """Find the smallest arena_size the TFLM interpreter accepts for this model.

    The interpreter either allocates all tensors or fails, and a larger arena
    never fails where a smaller one worked, so a bisection over the byte count
    finds the exact minimum (probes run in a child process, see TflmProcess). The
    interpreter is then run once on zeros so the recording allocator can
    report its head/tail split.

    Args:
        model: a parsed model whose operators TFLM supports.

    Returns:
        The measurement.

    Raises:
        BadInput: the model uses operators TFLM lacks, TFLM rejected it at every arena size
            tried, or crashed on it (a corrupt model that still parses).
    """
    missing = unsupported_ops(model)
    if missing:
        raise BadInput(f"TFLM does not support: {', '.join(missing)}")
    data = model.data
    prober = TflmProcess(data, model.path or "the model")
    try:
        low, high = ARENA_SEARCH_FLOOR, max(ARENA_SEARCH_FLOOR, 4096)
        while not prober.accepts(high):
            low = high + 1
            high *= 2
            if high > ARENA_SEARCH_CEILING:
                break
        else:
            while low < high:
                mid = (low + high) // 2
                if prober.accepts(mid):
                    high = mid
                else:
                    low = mid + 1
        if high > ARENA_SEARCH_CEILING:
            raise BadInput(f"{model.path or 'the model'}: TFLM can't set it up with any arena up to "
                           f"{ARENA_SEARCH_CEILING} bytes (a corrupt flatbuffer, or a model far beyond any "
                           "microcontroller)")
        prober.open(high)
        head, tail, records = _parse_allocations(prober.report())
    finally:
        prober.close()
    return ArenaMeasurement(high, head, tail, records, runtime_version())


class TflmRunner:
    """Runs a model on the TFLM interpreter (in a child process), one sample at a time as on the board."""

    def __init__(self, model: Model, arena_bytes: int | None = None):
        self.model = model
        size = arena_bytes or measure_arena(model).arena_bytes
        self.process = TflmProcess(model.data, model.path or "the model")
        self.process.open(size)

    def invoke_int8(self, sample: np.ndarray) -> np.ndarray:
        """One int8 input sample (without batch axis) -> the int8 output vector."""
        return np.frombuffer(self.process.run(np.ascontiguousarray(sample, dtype=np.int8).tobytes()), dtype=np.int8)

    def predict_int8(self, x_int8: np.ndarray) -> np.ndarray:
        return np.stack([self.invoke_int8(s) for s in x_int8])

    def close(self) -> None:
        self.process.close()

    def __del__(self):
        try:
            self.process.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
