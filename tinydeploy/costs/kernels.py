"""TFLM kernel libraries: the scratch memory each one asks the arena for.

A TFLM kernel may ask for scratch buffers in the arena while it prepares
(``RequestScratchBufferInArena``); the memory planner gives each one a place
that lives only while its operator runs. Which kernels ask, and for how much,
depends on the kernel library the firmware links:

- ``reference``: TFLite Micro's reference kernels (the host's tflite-micro
  package);
- ``cmsis-nn``: Arduino's Chirale_TensorFlowLite (2.0.0), whose CONV_2D, DEPTHWISE_CONV_2D,
  FULLY_CONNECTED, pooling, ADD, MUL and SOFTMAX are CMSIS-NN's, built from its portable C
  (an ESP32 is no Arm core: neither ARM_MATH_DSP nor MVE);
- ``esp-nn``: esp-tflite-micro with ESP-NN's generic C path (ESP32, ESP32-C3);
- ``esp-nn-s3``: esp-tflite-micro with ESP-NN's ESP32-S3 assembly kernels.

The sizes below re-derive, as facts, what the libraries' sources compute
(esp-tflite-micro 1.4.0: ``tensorflow/lite/micro/kernels/*.cc`` and
``kernels/esp_nn/*.cc``; esp-nn 1.2.3: the ``*_get_*_scratch_size_*`` functions).
A test compares them with ESP-NN's own functions when its sources are present.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model, Operator


def _align16(n: int) -> int:
    return (n + 15) & ~15


@dataclass(frozen=True)
class Window:
    """What ESP-NN's size functions are given for a convolution (NHWC, batch 1)."""
    in_w: int
    in_h: int
    in_ch: int
    filter_w: int
    filter_h: int
    out_w: int
    out_h: int
    out_ch: int
    stride_w: int
    stride_h: int
    pad_w: int
    pad_h: int
    ch_mult: int = 1


def window(model: Model, op: Operator) -> Window:
    """The geometry of a CONV_2D or DEPTHWISE_CONV_2D, with TFLM's padding (ComputePaddingHeightWidth)."""
    from tinydeploy.costs.counts import same_padding
    x, w, y = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    o = op.options
    sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
    same = o.get("padding") == "SAME"
    pad_h = same_padding(x.shape[1], w.shape[1], sh, o.get("dilation_h", 1), y.shape[1]) if same else 0
    pad_w = same_padding(x.shape[2], w.shape[2], sw, o.get("dilation_w", 1), y.shape[2]) if same else 0
    return Window(in_w=x.shape[2], in_h=x.shape[1], in_ch=x.shape[3], filter_w=w.shape[2], filter_h=w.shape[1],
                  out_w=y.shape[2], out_h=y.shape[1], out_ch=y.shape[3], stride_w=sw, stride_h=sh,
                  pad_w=pad_w, pad_h=pad_h, ch_mult=o.get("depth_multiplier", 1) or 1)


def _is_int8(model: Model, index: int) -> bool:
    return model.tensors[index].dtype == "INT8"


class KernelLibrary:
    """A kernel library's scratch requests. Subclasses change only what their kernels change."""

    name = "reference"
    description = "TFLite Micro reference kernels"

    def scratch(self, model: Model, op: Operator) -> list[tuple[str, int]]:
        """The scratch buffers one operator asks for while it prepares, in the order it asks:
        [(what, bytes)]."""
        requests = []
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(op.inputs) > 1:
            weights = model.tensors[op.inputs[1]]
            if weights.dtype == "INT4":  # unpacked to int8 while the operator runs
                requests.append(("int4 weights unpacked", weights.elements))
        if op.name in ("MEAN", "SUM") and len(op.inputs) > 1:  # reduce_common.cc, PrepareMeanOrSumHelper
            x, axis, y = model.tensors[op.inputs[0]], model.tensors[op.inputs[1]], model.tensors[op.outputs[0]]
            if x.dtype in ("INT8", "INT16"):
                requests.append(("accumulators", 4 * y.elements))
            requests += [("input iterator", 4 * len(x.shape)), ("resolved axes", 4 * axis.elements)]
        return requests


class EspNnGeneric(KernelLibrary):
    """esp-tflite-micro's ESP-NN kernels on a chip without ESP-NN assembly (generic C path)."""

    name = "esp-nn"
    description = "ESP-NN (esp-tflite-micro), generic C kernels"

    def scratch(self, model: Model, op: Operator) -> list[tuple[str, int]]:
        requests = super().scratch(model, op)
        if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D") and _is_int8(model, op.inputs[0]):
            size = self.conv_scratch(window(model, op), op.name == "DEPTHWISE_CONV_2D")
            if size > 0:
                requests.append(("ESP-NN scratch", size))
        if op.name == "SOFTMAX" and _is_int8(model, op.inputs[0]) and _is_int8(model, op.outputs[0]):
            shape = model.tensors[op.inputs[0]].shape
            size = self.softmax_scratch(shape[1] if len(shape) > 1 else 0)
            if size > 0:
                requests.append(("ESP-NN scratch", size))
        return requests

    def conv_scratch(self, w: Window, depthwise: bool) -> int:
        return 0  # esp_nn_get_(depthwise_)conv_scratch_size_opt

    def softmax_scratch(self, width: int) -> int:
        return 4 * width  # esp_nn_get_softmax_scratch_size_opt: one int32 per class (the width is dims[1])


class EspNnS3(EspNnGeneric):
    """esp-tflite-micro's ESP-NN kernels with the ESP32-S3's assembly (esp-nn >= 1.2.1)."""

    name = "esp-nn-s3"
    description = "ESP-NN (esp-tflite-micro), ESP32-S3 assembly kernels"

    def conv_scratch(self, w: Window, depthwise: bool) -> int:
        return self._depthwise(w) if depthwise else self._conv(w)

    @staticmethod
    def _conv(w: Window) -> int:
        """esp_nn_get_conv_scratch_size_esp32s3."""
        margin = 64  # 16 for alignment, 48 for the assembly's reads around the buffers
        channels8 = (w.in_ch + 7) & ~7
        pointwise = (w.filter_w == w.filter_h == 1 and w.pad_w == w.pad_h == 0 and w.stride_w == w.stride_h == 1)
        if pointwise:
            transpose = 0 if w.in_w * w.in_h < 8 else 2 * 8 * channels8
            padded_input = w.in_w * w.in_h * channels8 if w.in_ch % 8 else 0
            return padded_input + channels8 * w.out_ch + transpose + margin
        row = w.filter_w * w.in_ch
        window_len = w.filter_h * row
        if row < 16 and window_len >= 16:  # im2col path
            aligned = _align16(window_len)
            return w.out_ch * 4 + 16 + w.out_ch * aligned + 16 + aligned + margin
        channels16 = _align16(w.in_ch)
        padded_input = ((w.in_w + 2 * w.pad_w) * (w.in_h + 2 * w.pad_h) * w.in_ch) if (w.pad_w or w.pad_h) else 0
        filters = w.filter_w * w.filter_h * channels16 * w.out_ch
        filter_alignment = _align16(row) * w.filter_h * w.out_ch
        pad_right = max(0, w.out_w * w.stride_w + w.filter_w - 1 - w.in_w)
        pad_bottom = max(0, w.out_h * w.stride_h + w.filter_h - 1 - w.in_h)
        boundary = (w.in_w + pad_right) * (w.in_h + pad_bottom) * w.in_ch if (pad_right or pad_bottom) else 0
        return padded_input + filters + filter_alignment + boundary + margin + 4 * w.out_ch

    @staticmethod
    def _depthwise(w: Window) -> int:
        """esp_nn_get_depthwise_conv_scratch_size_esp32s3."""
        channels = w.in_ch
        filter_size = w.filter_w * w.filter_h * channels * w.ch_mult
        input_size = w.in_w * w.in_h * channels
        if w.ch_mult == 1 and channels % 8 == 0:
            if (w.filter_w, w.filter_h) != (3, 3):
                s16 = 2 * (filter_size + input_size)  # int16 copies of filter and input
                if s16 <= 48 * 1024:
                    return s16 + 32
                return 2 * filter_size + 2 * w.in_w * w.filter_h * channels + 32  # tiled by filter rows
            if channels % 16 == 0:
                if w.pad_w or w.pad_h:
                    pad_x, pad_y = 2 * w.pad_w, 2 * w.pad_h
                else:
                    pad_x = w.out_w * w.stride_w + w.filter_w - 1 - w.in_w
                    pad_y = w.out_h * w.stride_h + w.filter_h - 1 - w.in_h
                if not (pad_x or pad_y):
                    return filter_size + 16
                padded = (w.in_w + pad_x) * (w.in_h + pad_y) * channels
                if padded <= 40 * 1024:
                    return filter_size + padded + 16
                return filter_size + (w.in_w + pad_x) * w.filter_h * channels + 16  # a strip of filter rows
            if channels >= 12:  # channels padded to 16, then compacted
                channels16 = _align16(channels)
                pad_x = 2 * w.pad_w + max(0, w.out_w * w.stride_w + 2 - w.in_w)
                pad_y = 2 * w.pad_h + max(0, w.out_h * w.stride_h + 2 - w.in_h)
                return (9 * channels16 + (w.in_w + pad_x) * (w.in_h + pad_y) * channels16
                        + w.out_w * w.out_h * channels16 + 64)
            return 2 * (filter_size + input_size) + 32  # 8 channels: int16 path
        if w.ch_mult == 1 and channels > 3:  # channels padded to 8, each part 16-byte aligned
            channels8 = (channels + 7) & ~7
            input_start = _align16(2 * w.filter_w * w.filter_h * channels8)
            output_start = _align16(input_start + 2 * w.in_w * w.in_h * channels8)
            bias_start = _align16(output_start + w.out_w * w.out_h * channels8)
            return bias_start + 3 * 4 * channels8 + 16  # bias, shifts, multipliers, margin
        if w.ch_mult % 4 == 0:
            return 2 * (filter_size + input_size) + 32
        return 32

    def softmax_scratch(self, width: int) -> int:
        return 4 * width  # esp_nn_get_softmax_scratch_size_esp32s3


class CmsisNnPortable(KernelLibrary):
    """CMSIS-NN's kernels in Chirale_TensorFlowLite 2.0.0, portable C (no DSP or MVE extension).
    Of its size functions only the convolution's asks for scratch there: an im2col buffer of
    two int16 columns (arm_convolve_s8_get_buffer_size: 2 * in_ch * filter_w * filter_h int16),
    except on the 1x1 fast path (no padding, stride 1, dilation 1: arm_convolve_1x1_s8_fast, 0).
    Depthwise, fully connected and average pooling ask for none without DSP."""

    name = "cmsis-nn"
    description = "CMSIS-NN portable C kernels (Chirale_TensorFlowLite)"

    def scratch(self, model: Model, op: Operator) -> list[tuple[str, int]]:
        requests = super().scratch(model, op)
        if op.name == "CONV_2D" and _is_int8(model, op.inputs[0]):
            w, o = window(model, op), op.options
            one_by_one = (w.filter_w == w.filter_h == 1 and w.pad_w == w.pad_h == 0 and w.stride_w == w.stride_h == 1
                          and o.get("dilation_w", 1) == o.get("dilation_h", 1) == 1)
            if not one_by_one:
                requests.append(("CMSIS-NN im2col", 2 * w.in_ch * w.filter_w * w.filter_h * 2))
        return requests


LIBRARIES: dict[str, KernelLibrary] = {lib.name: lib for lib in (KernelLibrary(), EspNnGeneric(), EspNnS3(),
                                                                 CmsisNnPortable())}


def library(name: str) -> KernelLibrary:
    """The kernel library called name (a board profile's [tflm] value)."""
    if name not in LIBRARIES:
        raise BadInput(f"unknown kernel library '{name}'. Known: {', '.join(LIBRARIES)}")
    return LIBRARIES[name]


# ---- The C engine's kernels: a cost model per kernel shape -----------------------------------
#
# Where the C engine has more than one way to run a layer (variants of one kernel, e.g. a small
# depthwise layer unrolled whole or run four pixels at a time), lowering asks choose_variant()
# which is cheapest for the layer's shape. The answer comes from instruction counts measured on
# the emulated RV32IMC board (QEMU -icount: exact) over a generated grid of single-layer models,
# every variant of each (bench/kernel_grid.py writes data/cengine_kernels.json, which says how):
# the variant whose measured instructions per MAC at the nearest grid shape is lowest.

KERNEL_TABLE = Path(__file__).with_name("data") / "cengine_kernels.json"
# The features of a layer's shape that the distance between shapes is measured in (log2 of each
# plus one), as bench/kernel_grid.py records them.
SHAPE_FEATURES = ("out_h", "out_w", "channels", "multiplier", "k_h", "k_w", "stride", "padded")


@dataclass(frozen=True)
class KernelShape:
    """A windowed layer's shape, as the cost model compares shapes."""
    out_h: int
    out_w: int
    channels: int     # output channels
    multiplier: int   # depth multiplier (1 for a convolution)
    k_h: int
    k_w: int
    stride: int       # the larger of the two strides
    padded: int       # 1: SAME padding that adds taps outside the input; 0: none

    def vector(self) -> list[float]:
        return [math.log2(1 + getattr(self, name)) for name in SHAPE_FEATURES]


@lru_cache(maxsize=1)
def kernel_table() -> dict:
    """The measured grid: {"method": ..., "rows": [{"op", "variant", features..., "macs",
    "instructions"}]} (empty rows when the file is missing: then the first legal variant)."""
    if not KERNEL_TABLE.is_file():
        return {"rows": []}
    return json.loads(KERNEL_TABLE.read_text())


def predicted_per_mac(op: str, variant: str, shape: KernelShape, rows: list[dict] | None = None) -> float | None:
    """Instructions per MAC of a variant at the nearest measured shape of the same op (None: not measured)."""
    rows = kernel_table()["rows"] if rows is None else rows
    target = shape.vector()
    best, best_distance = None, math.inf
    for row in rows:
        if row["op"] != op or row["variant"] != variant or not row.get("macs"):
            continue
        measured = KernelShape(**{name: row[name] for name in SHAPE_FEATURES}).vector()
        distance = sum((a - b) ** 2 for a, b in zip(target, measured))
        if distance < best_distance:
            best, best_distance = row["instructions"] / row["macs"], distance
    return best


# Variants that cost the arena nothing beyond the layer's input and output, which may share
# bytes (no scratch, and an order of work that lets the output overlap the consumed input);
# the others: "gather" (a pair's windows in scratch) and "small" (its output planned apart).
LEAN_VARIANTS = ("quads", "channels", "direct")
# A lean variant is taken over a cheaper one that needs memory when the cost model predicts it
# at most this much slower (a fraction of the cheaper one's instructions): memory first where
# the instructions are as good as equal (e.g. a convolution's border windows, 0-2% apart on the
# measured grid).
LEAN_TOLERANCE = 0.05


def choose_variant(op: str, shape: KernelShape, legal: list[str], rows: list[dict] | None = None) -> str:
    """The legal variant the cost model predicts cheapest for this shape, or a lean one (no
    arena of its own, LEAN_VARIANTS) predicted within LEAN_TOLERANCE of it; the first legal one
    (the kernels' general path) where none was measured. Ties keep the earlier one."""
    costs = [(predicted_per_mac(op, variant, shape, rows), index, variant) for index, variant in enumerate(legal)]
    measured = [(cost, index, variant) for cost, index, variant in costs if cost is not None]
    if not measured:
        return legal[0]
    cheapest = min(measured)
    lean = [entry for entry in measured if entry[2] in LEAN_VARIANTS]
    if cheapest[2] not in LEAN_VARIANTS and lean and min(lean)[0] <= cheapest[0] * (1 + LEAN_TOLERANCE):
        return min(lean)[2]
    return cheapest[2]
