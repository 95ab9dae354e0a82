"""Lowering: every operator of an int8 model becomes a call of one of tinydeploy's C
kernels with its parameters fixed (multipliers and shifts, activation ranges, paddings,
weights repacked for the kernels), and all activations are planned statically in one
arena (tinydeploy.costs.memplan)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from tinydeploy.costs import liveness, memplan
from tinydeploy.costs.kernels import KernelShape, choose_variant
from tinydeploy.codegen.cengine import folding
from tinydeploy.codegen.cengine.arithmetic import (Unsupported, activation_range, multiply_by_quantized_multiplier, quant_of,
                                          quantize_multiplier, requant_fields, single_rounding_fields, softmax_exps)
from tinydeploy.costs.counts import op_macs, same_padding
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model, Operator, constant_values

ENGINE_OPS = ("ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS", "FULLY_CONNECTED",
              "MAX_POOL_2D", "MEAN", "PAD", "QUANTIZE", "RESHAPE", "SOFTMAX", "SQUEEZE")
ACC_LIMIT = 1 << 30  # the kernels' fast requantization needs |accumulator| below this
_CTYPE_BYTES = {"int8_t": 1, "int32_t": 4, "td_requant": 12}  # td_requant: one row of five fields


@dataclass(frozen=True)
class WorkOrder:
    """The windowed kernels' order of work (td_kernels_inline.h), defined here: lowering sets each
    layer's flags and bounds its output's overlap with its input by these numbers, the generated
    td_model.c stops the build where td_kernels.h's macros (C_MACROS) differ, and
    tests/test_cengine.py checks the kernels' actual order of writes against the bounds."""
    quad: int = 4  # pixels a block computes together (run_block, dw_quad); border columns' rows
    pair: int = 2  # pixels of the other blocks (int4 convolutions go in pairs only); gathered patches
    channel_group: int = 4  # output channels a block computes together; convolution weights packed by it
    small_side: int = 16  # a small depthwise layer (unrolled whole): at most this many outputs each way,
    small_taps: int = 256  # and this many taps over all of them (lowering's alone: the code it unrolls)

    C_MACROS = {"quad": "TD_QUAD", "pair": "TD_PAIR", "channel_group": "TD_CHANNEL_GROUP",
                "small_side": "TD_SMALL_SIDE"}

    def c_checks(self) -> list[tuple[str, str, int]]:
        """(field, td_kernels.h macro, value) for each number the kernels hold too."""
        return [(name, macro, getattr(self, name)) for name, macro in self.C_MACROS.items()]


WORK_ORDER = WorkOrder()


@dataclass
class Array:
    name: str
    ctype: str
    values: np.ndarray

    @property
    def bytes(self) -> int:
        """Bytes as the C code declares it (a td_requant is one row of values)."""
        count = len(self.values) if self.ctype == "td_requant" else self.values.size
        return count * _CTYPE_BYTES[self.ctype]


@dataclass(frozen=True)
class Option:
    """One order of work a windowed kernel may take: its variant, the fields that select it,
    and what it asks of the memory plan (scratch bytes, and its output's overlap with its input:
    from below, segment_overlap, or from above, reverse_overlap). A faster order may need more
    memory: lowering takes the cost model's pick, then another where that makes the arena
    smaller (choose_for_memory). Options of the same variant differ in order only, not speed."""
    variant: str
    flags: tuple[tuple[str, str], ...]
    scratch: int = 0
    overlap: int | None = None
    above: int | None = None

    def weaker_than(self, other: "Option") -> bool:
        """Asks no more of the plan than other (no more scratch, at least as much overlap; none
        is the least), and less of something: only such an option can make an arena smaller."""
        mine, theirs = (-math.inf if o is None else o for o in (self.overlap, other.overlap))
        return self.scratch <= other.scratch and mine >= theirs and (self.scratch, mine) != (other.scratch, theirs)


@dataclass
class Call:
    op: Operator
    kernel: str
    struct: str
    fields: list[tuple[str, str]]
    inputs: list[int]
    output: int
    arrays: list[Array] = field(default_factory=list)
    view: bool = False       # RESHAPE: a view, no code when the plan shares the buffer
    in_place: bool = False
    macs: int = 0
    scratch: int = 0         # bytes of working memory the kernel needs during the call (in the arena)
    overlap: int | None = None  # how far past its input's start the output may begin (segment_overlap)
    above: int | None = None    # or how far past it the output must begin at least (reverse_overlap)
    variant: str = ""        # the kernel variant the cost model chose (tinydeploy.costs.kernels.choose_variant)
    options: list[Option] = field(default_factory=list)  # the orders of work it may take; the first is the fastest
    taken: Option | None = None  # the one it takes
    parts: list["Call"] = field(default_factory=list)  # a row-fused call (kernel ROWS_FUSED): its calls
    fusion: "Fusion | None" = None  # and how they run, band by band (fuse_rows)

    @property
    def members(self) -> list["Call"]:
        """The kernel calls it makes: its parts where it is row-fused, else itself."""
        return self.parts or [self]

    def take(self, option: Option) -> None:
        """Run this call in the given order of work (one of self.options)."""
        self.taken = option
        flags = dict(option.flags)
        self.fields = [(k, flags.get(k, v)) for k, v in self.fields]
        self.variant, self.scratch, self.overlap, self.above = option.variant, option.scratch, option.overlap, option.above


@dataclass
class Lowered:
    model: Model
    calls: list[Call]
    plan: memplan.Plan
    input: int
    output: int
    lower_bound: int

    @property
    def arena_bytes(self) -> int:
        return self.plan.size

    @property
    def members(self) -> list[Call]:
        """Every kernel call, a row-fused call's parts in its place (Call.members)."""
        return [member for call in self.calls for member in call.members]

    @property
    def weight_bytes(self) -> int:
        """Bytes of the constant arrays as the C code declares them."""
        return int(sum(a.bytes for c in self.calls for a in c.arrays))

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.calls)


def _int_fields(**values) -> list[tuple[str, str]]:
    return [(k, str(int(v))) for k, v in values.items()]


def _check_int8(model: Model, indices) -> None:
    for i in indices:
        if model.tensors[i].dtype != "INT8":
            raise Unsupported(f"{model.tensors[i].dtype.lower()} tensor '{model.tensors[i].name}'")


def _conv_multipliers(model: Model, op: Operator, channels: int, fields=requant_fields) -> list[list[int]]:
    in_scale, _ = quant_of(model, op.inputs[0])
    out_scale, out_zero = quant_of(model, op.outputs[0])
    filter_q = model.tensors[op.inputs[1]].quantization
    if filter_q is None:
        raise Unsupported("weights without quantization")
    scales = list(filter_q.scales) if len(filter_q.scales) > 1 else [filter_q.scales[0]] * channels
    if len(scales) != channels:
        raise Unsupported(f"{len(scales)} weight scales for {channels} channels")
    rows = []
    for s in scales:  # PopulateConvolutionQuantizationParams: double(in) * double(filter) / double(out)
        rows.append(fields(*quantize_multiplier(float(in_scale) * float(s) / float(out_scale)), out_zero))
    return rows


def _bias(model: Model, op: Operator, channels: int) -> np.ndarray:
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        bias = constant_values(model, op.inputs[2]).astype(np.int64).reshape(-1)
        if model.tensors[op.inputs[2]].dtype != "INT32":
            raise Unsupported(f"{model.tensors[op.inputs[2]].dtype.lower()} bias")
        if len(bias) != channels:
            raise _damaged(model, op, f"its bias has {len(bias)} values for {channels} output channels")
        return bias
    return np.zeros(channels, dtype=np.int64)


def _check_accumulator(bias: np.ndarray, weight_abs_sum: np.ndarray) -> np.ndarray:
    """A bound on each channel's accumulator (bias or folded bias, plus 255 * sum |w|)."""
    bound = np.abs(bias) + 255 * weight_abs_sum
    if bound.max(initial=0) >= ACC_LIMIT:
        raise Unsupported("accumulators that may reach 2^30 (a layer this wide)")
    return bound


def _fast(rq: list[list[int]], acc_bound: np.ndarray) -> bool:
    """The kernels' fast requantization applies: every channel shifts right only (left 0, a
    fast shift of 2..31) and 4 * acc and h + round_offset stay within int32 (|h| <= 2 |acc| + 1,
    h the high word of 4 acc times the multiplier, which is below 2^31)."""
    return all(left == 0 and 2 <= fast_shift <= 31 and 4 * int(bound) < 2 ** 31 and
               2 * int(bound) + 3 + abs(round_offset) < 2 ** 31
               for (_, round_offset, left, _, fast_shift), bound in zip(rq, acc_bound))


def _pad4(values: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros((length,) + values.shape[1:], dtype=values.dtype)
    out[:len(values)] = values
    return out


def _weights(model: Model, op: Operator) -> np.ndarray:
    w = model.tensors[op.inputs[1]]
    if w.dtype not in ("INT8", "INT4") or not w.is_constant:
        raise Unsupported(f"{w.dtype.lower()} or non-constant weights")
    if w.quantization and any(z != 0 for z in w.quantization.zero_points):
        raise Unsupported("weights with a non-zero zero point")
    return constant_values(model, op.inputs[1]).astype(np.int64)


def _window(op: Operator, x, y, k_h: int, k_w: int) -> tuple[int, int, int, int, int, int]:
    """Strides, dilations and the padding before, of a windowed op (ComputePaddingHeightWidth)."""
    o = op.options
    sh, sw, dh, dw = o.get("stride_h", 1), o.get("stride_w", 1), o.get("dilation_h", 1), o.get("dilation_w", 1)
    same = o.get("padding") == "SAME"
    pad_top = same_padding(x.shape[1], k_h, sh, dh, y.shape[1]) if same else 0
    pad_left = same_padding(x.shape[2], k_w, sw, dw, y.shape[2]) if same else 0
    return sh, sw, dh, dw, pad_top, pad_left


def inside_range(pad: int, stride: int, span: int, size: int, out: int) -> tuple[int, int]:
    """The outputs [lo, hi) along one axis whose windows (span input values from o * stride -
    pad) lie inside [0, size), as td_kernels_inline.h's inside_range() finds them."""
    room = size - span + pad
    hi = min(out, room // stride + 1 if room >= 0 else 0)
    return min((pad + stride - 1) // stride, hi), hi


def conv_gathers(in_h: int, in_w: int, out_h: int, out_w: int, k_h: int, k_w: int, stride_h: int, stride_w: int,
                 dil_h: int, dil_w: int, pad_top: int, pad_left: int) -> bool:
    """Whether the convolution kernel gathers some pair's windows into scratch: it reads a
    window in place only where it lies inside the input and dil_w is 1 (window_inside())."""
    rows = inside_range(pad_top, stride_h, (k_h - 1) * dil_h + 1, in_h, out_h)
    columns = inside_range(pad_left, stride_w, k_w, in_w, out_w)
    return dil_w != 1 or rows != (0, out_h) or columns != (0, out_w)


def border_columns_ahead(out_h: int, out_w: int, rows: tuple[int, int], columns: tuple[int, int]) -> int:
    """How many rows ahead of the row it is on the depthwise kernel may write: quad - 1 where it
    does the border columns (outside `columns`) of `quad` rows whose windows cover every row
    (inside `rows`) `quad` pixels down each column, before those rows' other pixels; else 0."""
    y_lo, y_hi = rows
    quad = WORK_ORDER.quad
    return quad - 1 if out_w > 1 and y_hi - y_lo >= quad and columns != (0, out_w) else 0


def segment_overlap(in_w: int, in_c: int, out_h: int, out_w: int, out_c: int, stride_h: int, stride_w: int,
                    pad_top: int, pad_left: int, together: int, ahead: int = 0, channel_order: bool = False) -> int:
    """How far past the start of its input (in bytes, negative: below it) a windowed kernel's
    output may begin and still never overwrite an input byte before its last read.

    The convolution, depthwise and pooling kernels compute output pixels in row-major order,
    at most `together` at a time (WorkOrder.quad for a depthwise layer and a convolution,
    WorkOrder.pair for a convolution with int4 weights, one for pooling), and may write part
    of a group's outputs (some channels) before they have read all of its windows. The lowest input byte a
    pixel's window reads is its top-left tap inside the image (taps in the padding are never
    read). So when pixel q's output is written (with the rest of its group, at worst), every
    input byte still to be read lies at or above the lowest first read of the pixels from q on:
    the output must start low enough that pixels q to q + together - 1 end below it, for every
    q; and where the kernel writes `ahead` rows ahead (border_columns_ahead), the rows up to
    q's plus `ahead` too. The bound is the tightest pixel's.

    With channel_order (a depthwise layer of multiplier 1, no rows ahead), a group's channels
    go in order, each channel's outputs written after the reads of its own input channel, the
    only one it reads. While a group is under way its pixels still read only channels above the
    last one written, so the output may start up to one pixel's channels higher; the pixels
    after the group wait for its end."""
    pixels = out_h * out_w
    oy, ox = np.divmod(np.arange(pixels), out_w)
    first_read = (np.maximum(0, oy * stride_h - pad_top) * in_w + np.maximum(0, ox * stride_w - pad_left)) * in_c
    still_read = np.minimum.accumulate(first_read[::-1])[::-1]  # lowest first read of pixels q, q+1, ...
    if channel_order and not ahead:
        ends = np.minimum(np.arange(pixels) + together, pixels)  # q's group: pixels [q, end), at worst
        lowest = np.array([first_read[q:end].min() for q, end in enumerate(ends)])
        during = lowest - (ends - 1) * out_c  # channel c of pixel end - 1 written, c + 1 of the group's still read
        later = np.append(still_read, np.iinfo(np.int64).max // 2)[ends]  # the pixels after the group
        return int(min(during.min(), (later - ends * out_c).min()))
    group_end = np.arange(pixels) + together  # end of q's group, at worst
    if ahead:
        group_end = np.maximum(group_end, (oy + 1 + ahead) * out_w)
    written = np.minimum(group_end, pixels) * out_c
    return int((still_read - written).min())


def reverse_overlap(pixels: int, in_c: int, out_c: int) -> int:
    """How far past the start of its input (in bytes, positive) a pointwise convolution run in
    reverse (td_conv's reverse flag) must begin its output, so that it may run on over the
    input's tail and never overwrite an input byte before its last read.

    The kernel takes the last pixels % WORK_ORDER.quad pixels one at a time, last first, then
    groups of `quad` pixels down to pixel 0, and may write some channels of a group before it
    has read all of the group's inputs. When it writes a group [a, b), the input still to be
    read is that of pixels 0 to b - 1, which ends at b * in_c: the group's first output byte,
    a * out_c past the output's start, must lie at or above it."""
    quad = WORK_ORDER.quad
    quads = pixels - pixels % quad
    groups = [(a, a + 1) for a in range(quads, pixels)] + [(a, a + quad) for a in range(0, quads, quad)]
    return max(b * in_c - a * out_c for a, b in groups)


def _output_range(model: Model, op: Operator) -> tuple[int, int, int]:
    """The output zero point and the fused activation's clamp range."""
    out_scale, out_zero = quant_of(model, op.outputs[0])
    return (out_zero, *activation_range(op.options.get("activation", "NONE"), out_scale, out_zero))


def _lower_conv(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    w = _weights(model, op)  # [out_c, k_h, k_w, in_c]
    out_c, k_h, k_w, in_c = w.shape
    if len(x.shape) != 4 or x.shape[3] != in_c:
        raise Unsupported("grouped convolution")
    _, in_h, in_w, _ = x.shape
    _, out_h, out_w, _ = y.shape
    sh, sw, dh, dw, pad_top, pad_left = _window(op, x, y, k_h, k_w)
    _, in_zero = quant_of(model, op.inputs[0])
    out_zero, act_min, act_max = _output_range(model, op)
    bias = _bias(model, op, out_c)
    in_offset = -in_zero
    bias_full = bias + in_offset * w.reshape(out_c, -1).sum(1)
    bound = _check_accumulator(np.maximum(np.abs(bias), np.abs(bias_full)), np.abs(w).reshape(out_c, -1).sum(1))
    block = WORK_ORDER.channel_group
    groups = (out_c + block - 1) // block
    padded = groups * block
    packed = _pad4(w, padded).reshape(groups, block, k_h, k_w, in_c).transpose(0, 2, 3, 4, 1)
    rq = _conv_multipliers(model, op, out_c)
    fast = _fast(rq, bound)
    rq += [[0] * 5] * (padded - out_c)
    packed = packed.reshape(-1)
    int4 = model.tensors[op.inputs[1]].dtype == "INT4"
    if int4:  # kept packed in flash: two a byte, the first in the low nibble (td_kernels.h)
        nibbles = packed.astype(np.uint8) & 0x0F
        packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8).view(np.int8)
    arrays = [Array(f"{name}_weights", "int8_t", packed),
              Array(f"{name}_bias_full", "int32_t", _pad4(bias_full, padded)),
              Array(f"{name}_rq", "td_requant", np.array(rq, dtype=np.int64))]
    fields = _int_fields(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c, k_h=k_h, k_w=k_w,
                         stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_top=pad_top, pad_left=pad_left,
                         in_offset=in_offset, out_offset=out_zero, act_min=act_min, act_max=act_max,
                         fast_requant=fast, int4_weights=int4)
    fields += [("weights", arrays[0].name), ("bias_full", arrays[1].name), ("rq", arrays[2].name)]
    gathers = conv_gathers(in_h, in_w, out_h, out_w, k_h, k_w, sh, sw, dh, dw, pad_top, pad_left)
    # Windows over the border: gathered a pair at a time into scratch ("gather"), or read in
    # place a pixel at a time ("direct", int8 weights: no scratch), as the kernel cost model
    # (tinydeploy.costs.kernels) predicts cheaper for this shape.
    variant = ""
    if gathers:
        variant = choose_variant("CONV_2D", kernel_shape(y.shape, 1, k_h, k_w, sh, sw, pad_top, pad_left),
                                 conv_variants(int4))
    fields.insert(-3, ("direct_borders", str(int(variant == "direct"))))
    fields.insert(-3, ("reverse", "0"))
    overlap = segment_overlap(in_w, in_c, out_h, out_w, out_c, sh, sw, pad_top, pad_left,
                              WORK_ORDER.pair if int4 else WORK_ORDER.quad)
    # a pair's windows gathered into scratch
    options = [Option(v, (("direct_borders", str(int(v == "direct"))),),
                      WORK_ORDER.pair * k_h * k_w * in_c if v == "gather" else 0, overlap)
               for v in ([variant] + [v for v in conv_variants(int4) if v != variant] if gathers else [])]
    if (k_h, k_w, sh, sw, pad_top, pad_left) == (1, 1, 1, 1, 0, 0) and not int4:
        # a pointwise layer: in pixel order, or in reverse over its input's tail (reverse_overlap)
        options = [Option(variant, (("reverse", "0"),), 0, overlap),
                   Option(variant, (("reverse", "1"),), 0, None, reverse_overlap(out_h * out_w, in_c, out_c))]
    call = Call(op, "td_conv_2d", "td_conv", fields, [op.inputs[0]], op.outputs[0], arrays, overlap=overlap,
                variant=variant, options=options)
    if options:
        call.take(options[0])
    return call


def conv_variants(int4: bool) -> list[str]:
    """The convolution's ways with windows over the border, legal for its weights; first the one
    it took before it had a cost model (what choose_variant() falls back on without measurements)."""
    return ["gather"] if int4 else ["gather", "direct"]


def _lower_depthwise(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    w = _weights(model, op)  # [1, k_h, k_w, out_c]
    _, k_h, k_w, out_c = w.shape
    _, in_h, in_w, in_c = x.shape
    _, out_h, out_w, _ = y.shape
    if out_c % in_c:
        raise Unsupported("a depth multiplier that does not divide the channels")
    sh, sw, dh, dw, pad_top, pad_left = _window(op, x, y, k_h, k_w)
    _, in_zero = quant_of(model, op.inputs[0])
    out_zero, act_min, act_max = _output_range(model, op)
    bias = _bias(model, op, out_c)
    in_offset = -in_zero
    flat = w.reshape(k_h * k_w, out_c)
    bias_full = bias + in_offset * flat.sum(0)
    bound = _check_accumulator(np.maximum(np.abs(bias), np.abs(bias_full)), np.abs(flat).sum(0))
    rq = _conv_multipliers(model, op, out_c)
    arrays = [Array(f"{name}_weights", "int8_t", flat.reshape(-1)),
              Array(f"{name}_bias", "int32_t", bias),
              Array(f"{name}_bias_full", "int32_t", bias_full),
              Array(f"{name}_rq", "td_requant", np.array(rq, dtype=np.int64))]
    fields = _int_fields(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                         depth_multiplier=out_c // in_c, k_h=k_h, k_w=k_w, stride_h=sh, stride_w=sw,
                         dil_h=dh, dil_w=dw, pad_top=pad_top, pad_left=pad_left, in_offset=in_offset,
                         out_offset=out_zero, act_min=act_min, act_max=act_max, fast_requant=_fast(rq, bound))
    # The kernel's order of work, the variant the kernel cost model (tinydeploy.costs.kernels)
    # predicts cheapest for this shape: "small", the layer unrolled whole, channel by channel
    # over the image (so its output is planned apart from its input), where the code it
    # unrolls stays small; "quads", four pixels a channel at a time wherever their windows
    # cover the same taps (the border columns of `quad` rows may be done before those rows);
    # "channels" (a depth multiplier above 1 only), a pixel at a time, channel by channel.
    order = WORK_ORDER
    variant = choose_variant("DEPTHWISE_CONV_2D", kernel_shape(y.shape, out_c // in_c, k_h, k_w, sh, sw, pad_top,
                                                                pad_left), depthwise_variants(out_h, out_w, k_h, k_w,
                                                                                              out_c // in_c))
    legal = depthwise_variants(out_h, out_w, k_h, k_w, out_c // in_c)
    ahead = border_columns_ahead(out_h, out_w, inside_range(pad_top, sh, (k_h - 1) * dh + 1, in_h, out_h),
                                 inside_range(pad_left, sw, (k_w - 1) * dw + 1, in_w, out_w))

    multiplier = out_c // in_c

    def option(variant: str, border_columns: bool) -> Option:
        small, quads = variant == "small", variant != "channels"
        flags = _int_fields(small=small, border_columns=border_columns, quads=quads)
        # four pixels together along a row (four or more wide) or down a column (one wide); else
        # pairs (a multiplier of 1) or one pixel at a time (dw_channels)
        together = order.quad if quads and (out_w >= order.quad or out_w == 1) else order.pair if multiplier == 1 else 1
        return Option(variant, tuple(flags), 0, None if small else segment_overlap(
            in_w, in_c, out_h, out_w, out_c, sh, sw, pad_top, pad_left, together, ahead if border_columns else 0,
            channel_order=multiplier == 1))

    # Each legal variant, the border columns done ahead where "quads" may (faster) and not (its
    # output may then overlap its input by `ahead` rows more); the cost model's pick first.
    options = [option(v, bool(ahead) and v == "quads") for v in [variant] + [v for v in legal if v != variant]]
    if ahead and "quads" in legal:
        options.append(option("quads", False))
    fields += options[0].flags
    fields += [("weights", arrays[0].name), ("bias", arrays[1].name), ("bias_full", arrays[2].name),
               ("rq", arrays[3].name)]
    call = Call(op, "td_depthwise_conv_2d", "td_depthwise", fields, [op.inputs[0]], op.outputs[0], arrays,
                variant=variant, options=options)
    call.take(options[0])
    return call


def depthwise_variants(out_h: int, out_w: int, k_h: int, k_w: int, multiplier: int) -> list[str]:
    """The depthwise kernel's variants legal for a shape; first the one its kernel took before
    it had a cost model (what choose_variant() falls back on without measurements)."""
    order = WORK_ORDER
    small = out_h <= order.small_side and out_w <= order.small_side and out_h * out_w * k_h * k_w <= order.small_taps
    if multiplier == 1:
        return ["small", "quads"] if small else ["quads"]
    return ["channels", "quads"] + (["small"] if small else [])


def kernel_shape(out_shape, multiplier: int, k_h: int, k_w: int, sh: int, sw: int, pad_top: int,
                 pad_left: int) -> KernelShape:
    """A windowed layer's shape as the kernel cost model compares shapes."""
    return KernelShape(out_h=out_shape[1], out_w=out_shape[2], channels=out_shape[3], multiplier=multiplier,
                       k_h=k_h, k_w=k_w, stride=max(sh, sw), padded=int(pad_top > 0 or pad_left > 0))


def _lower_fully_connected(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x = model.tensors[op.inputs[0]]
    w = _weights(model, op)  # [units, depth]
    if w.ndim != 2:
        raise Unsupported(f"{w.ndim}-D weights")
    units, depth = w.shape
    if x.elements % depth:
        raise Unsupported("an input that is not a whole number of weight rows")
    _, in_zero = quant_of(model, op.inputs[0])
    out_zero, act_min, act_max = _output_range(model, op)
    bias = _bias(model, op, units)
    bias_full = bias - in_zero * w.sum(1)
    bound = _check_accumulator(np.maximum(np.abs(bias), np.abs(bias_full)), np.abs(w).sum(1))
    # TensorFlow 2.21's reference per-channel fully connected kernel rounds once:
    # (acc * multiplier + 2^(s-1)) >> s with s = 31 - shift (found by comparing with it).
    per_channel = len(model.tensors[op.inputs[1]].quantization.scales) > 1
    rq = _conv_multipliers(model, op, units, single_rounding_fields if per_channel else requant_fields)
    arrays = [Array(f"{name}_weights", "int8_t", w.reshape(-1)),
              Array(f"{name}_bias_full", "int32_t", bias_full),
              Array(f"{name}_rq", "td_requant", np.array(rq, dtype=np.int64))]
    fields = _int_fields(batches=x.elements // depth, depth=depth, units=units, single_rounding=per_channel,
                         out_offset=out_zero, act_min=act_min, act_max=act_max, fast_requant=_fast(rq, bound))
    fields += [("weights", arrays[0].name), ("bias_full", arrays[1].name), ("rq", arrays[2].name)]
    return Call(op, "td_fully_connected_s8", "td_fully_connected", fields, [op.inputs[0]], op.outputs[0], arrays)


def _lower_pool(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if quant_of(model, op.inputs[0]) != quant_of(model, op.outputs[0]):
        raise Unsupported("pooling that changes the quantization")
    _, in_h, in_w, channels = x.shape
    _, out_h, out_w, _ = y.shape
    fh, fw = op.options["filter_h"], op.options["filter_w"]
    sh, sw, _, _, pad_top, pad_left = _window(op, x, y, fh, fw)
    _, act_min, act_max = _output_range(model, op)
    fields = _int_fields(in_h=in_h, in_w=in_w, channels=channels, out_h=out_h, out_w=out_w, f_h=fh, f_w=fw,
                         stride_h=sh, stride_w=sw, pad_top=pad_top, pad_left=pad_left, act_min=act_min,
                         act_max=act_max)
    kernel = "td_max_pool_2d" if op.name == "MAX_POOL_2D" else "td_average_pool_2d"
    return Call(op, kernel, "td_pool", fields, [op.inputs[0]], op.outputs[0],
                overlap=segment_overlap(in_w, channels, out_h, out_w, channels, sh, sw, pad_top, pad_left, 1))


def _lower_mean(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x = model.tensors[op.inputs[0]]
    axes = sorted(int(a) % max(len(x.shape), 1) for a in constant_values(model, op.inputs[1]).reshape(-1))
    if not (len(x.shape) == 4 and axes == [1, 2] or len(x.shape) == 3 and axes == [1]) or x.shape[0] != 1:
        raise Unsupported(f"MEAN over axes {axes} of a {len(x.shape)}-D tensor "
                          "(the C engine averages [1, H, W, C] over H, W and [1, T, C] over T)")
    height, width = x.shape[1], x.shape[2] if len(x.shape) == 4 else 1
    in_scale, in_zero = quant_of(model, op.inputs[0])
    out_scale, out_zero = quant_of(model, op.outputs[0])
    n = height * width
    # PrepareMeanOrSum's multiplier; QuantizedMeanOrSum then folds 1/n into it (with
    # keep_dims too: TensorFlow 2.21's reference kernels take this path for every int8 MEAN).
    multiplier, shift = quantize_multiplier(float(in_scale) / float(out_scale))
    extra = min(n.bit_length() - 1, 32, 31 + shift)
    multiplier, shift = (multiplier << extra) // n, shift - extra
    fields = _int_fields(h=height, w=width, channels=x.shape[-1],
                                             in_zero_point=in_zero, out_zero_point=out_zero)
    fields.append(("rq", "{" + ", ".join(str(v) for v in requant_fields(multiplier, shift)) + "}"))
    # td_mean_s8 writes channel c's output after its last read of channel c, and reads no
    # channel below c after that: output byte c lands on input byte c or below, read already.
    return Call(op, "td_mean_s8", "td_mean", fields, [op.inputs[0]], op.outputs[0], overlap=0)


def _lower_add(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.inputs[1], op.outputs[0]])
    a, b, y = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if a.shape != b.shape or a.shape != y.shape:
        raise Unsupported("ADD with broadcasting")
    if a.is_constant or b.is_constant:
        raise Unsupported("ADD of a constant")
    s1, z1 = quant_of(model, op.inputs[0])
    s2, z2 = quant_of(model, op.inputs[1])
    so, zo = quant_of(model, op.outputs[0])
    left_shift = 20
    # PrepareInt8AddSub: float arithmetic where TFLite's operands are float, then double.
    twice_max = float(np.float32(2) * max(np.float32(s1), np.float32(s2)))
    m1, sh1 = quantize_multiplier(float(s1) / twice_max)
    m2, sh2 = quantize_multiplier(float(s2) / twice_max)
    mo, sho = quantize_multiplier(twice_max / float(np.float32(1 << left_shift) * np.float32(so)))
    act_min, act_max = activation_range(op.options.get("activation", "NONE"), so, zo)
    # Each input's rescaled value depends on that int8 input alone: a table of 256 per input.
    scaled = [np.array([multiply_by_quantized_multiplier((x - z) << left_shift, m, sh) for x in range(-128, 128)],
                       dtype=np.int64) for z, m, sh in ((z1, m1, sh1), (z2, m2, sh2))]
    rq = requant_fields(mo, sho, zo)
    bound = np.array([np.abs(scaled[0]).max() + np.abs(scaled[1]).max()])
    arrays = [Array(f"{name}_scaled1", "int32_t", scaled[0]), Array(f"{name}_scaled2", "int32_t", scaled[1])]
    fields = _int_fields(size=y.elements, out_offset=zo, act_min=act_min, act_max=act_max,
                         fast_requant=_fast([rq], bound))
    fields += [("scaled1", arrays[0].name), ("scaled2", arrays[1].name), ("rq", "{" + ", ".join(map(str, rq)) + "}")]
    return Call(op, "td_add_s8", "td_add", fields, [op.inputs[0], op.inputs[1]], op.outputs[0], arrays,
                in_place=True)


def _lower_pad(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if len(x.shape) > 4:
        raise Unsupported(f"PAD of a {len(x.shape)}-D tensor")
    pads = constant_values(model, op.inputs[1]).reshape(-1, 2).astype(int).tolist()
    extra = 4 - len(x.shape)
    in_dims = [1] * extra + list(x.shape)
    out_dims = [1] * extra + list(y.shape)
    before = [0] * extra + [p[0] for p in pads]
    _, out_zero = quant_of(model, op.outputs[0])
    fields = [("in_dims", "{" + ", ".join(map(str, in_dims)) + "}"),
              ("out_dims", "{" + ", ".join(map(str, out_dims)) + "}"),
              ("before", "{" + ", ".join(map(str, before)) + "}"), ("value", str(out_zero))]
    return Call(op, "td_pad_s8", "td_pad", fields, [op.inputs[0]], op.outputs[0])


def _lower_softmax(model: Model, op: Operator, name: str) -> Call:
    _check_int8(model, [op.inputs[0], op.outputs[0]])
    x = model.tensors[op.inputs[0]]
    in_scale, _ = quant_of(model, op.inputs[0])
    out_scale, out_zero = quant_of(model, op.outputs[0])
    if out_zero != -128 or np.float32(out_scale) != np.float32(1 / 256):
        raise Unsupported("SOFTMAX output quantization other than scale 1/256, zero point -128")
    beta = float(op.options.get("beta", 1.0))
    # PreprocessSoftmaxScaling with 5 integer bits, then CalculateInputRadius.
    real = min(beta * float(in_scale) * (1 << (31 - 5)), (1 << 31) - 1.0)
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << 5) - 1) * (1 << (31 - 5)) / (1 << left_shift))
    depth = x.shape[-1]
    exps = Array(f"{name}_exps", "int32_t", np.array(softmax_exps(multiplier, left_shift, -radius), dtype=np.int64))
    fields = _int_fields(rows=x.elements // depth, depth=depth) + [("exps", exps.name)]
    # In place: td_softmax_s8 writes each output after its row's last read of the same byte.
    return Call(op, "td_softmax_s8", "td_softmax", fields, [op.inputs[0]], op.outputs[0], [exps], in_place=True)


def _lower_quantize(model: Model, op: Operator, name: str) -> Call:
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if x.dtype != "INT8" or y.dtype != "INT8":
        raise Unsupported(f"QUANTIZE from {x.dtype.lower()} to {y.dtype.lower()} (int8 to int8 only)")
    in_scale, in_zero = quant_of(model, op.inputs[0])
    out_scale, out_zero = quant_of(model, op.outputs[0])
    rq = requant_fields(*quantize_multiplier(float(in_scale) / float(out_scale)))
    fields = _int_fields(size=y.elements, in_zero_point=in_zero, out_zero_point=out_zero)
    fields.append(("rq", "{" + ", ".join(str(v) for v in rq) + "}"))
    return Call(op, "td_requantize_s8", "td_requantize", fields, [op.inputs[0]], op.outputs[0], in_place=True)


def _lower_reshape(model: Model, op: Operator, name: str) -> Call:
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if x.nbytes != y.nbytes:
        raise Unsupported(f"{op.name} that changes the size")
    return Call(op, "td_copy", "", [], [op.inputs[0]], op.outputs[0], view=True)


_LOWER = {"CONV_2D": _lower_conv, "DEPTHWISE_CONV_2D": _lower_depthwise, "FULLY_CONNECTED": _lower_fully_connected,
          "MAX_POOL_2D": _lower_pool, "AVERAGE_POOL_2D": _lower_pool, "MEAN": _lower_mean, "ADD": _lower_add,
          "PAD": _lower_pad, "SOFTMAX": _lower_softmax, "QUANTIZE": _lower_quantize, "RESHAPE": _lower_reshape,
          "EXPAND_DIMS": _lower_reshape, "SQUEEZE": _lower_reshape}


def _damaged(model: Model, op: Operator, why: str) -> BadInput:
    return BadInput(f"{model.path}: operator {op.index} ({op.name}): {why} (a damaged model?)")


def _out_size(padding: str, size: int, span: int, stride: int) -> int:
    """TFLite's ComputeOutSize: the outputs of a window of `span` inputs along one axis."""
    return (size + stride - 1) // stride if padding == "SAME" else (size - span + stride) // stride


def _check_operands(model: Model, op: Operator) -> None:
    """What the kernels take for granted of an operator's tensors, checked before lowering it:
    no empty tensors, and the output shape its input, weights and options give (as TFLite's
    Prepare checks), so a damaged model is refused, naming the field, instead of sizing a
    kernel's loops from it. core.model has already checked indices, ranks and buffers."""
    for role, indices in (("input", op.inputs), ("output", op.outputs)):
        for position, i in enumerate(indices):
            if i >= 0 and 0 in model.tensors[i].shape:
                raise _damaged(model, op, f"{role} {position} '{model.tensors[i].name}' has shape "
                                          f"{list(model.tensors[i].shape)}, which holds no values")
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    o = op.options
    if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "AVERAGE_POOL_2D"):
        if o.get("padding") not in ("SAME", "VALID"):
            raise _damaged(model, op, f"padding {o.get('padding')!r}; TFLite has SAME and VALID")
        if op.name.endswith("POOL_2D"):
            if "filter_h" not in o or "filter_w" not in o:
                raise _damaged(model, op, "no filter size in its options")
            k_h, k_w, channels = o["filter_h"], o["filter_w"], x.shape[3]
        else:
            w = model.tensors[op.inputs[1]].shape
            k_h, k_w = w[1], w[2]
            channels = w[0] if op.name == "CONV_2D" else w[3]
            if op.name == "DEPTHWISE_CONV_2D" and w[0] != 1:
                raise _damaged(model, op, f"depthwise weights of shape {list(w)}; the first dimension is 1")
        sh, sw = o.get("stride_h", 1), o.get("stride_w", 1)
        dh, dw = (1, 1) if op.name.endswith("POOL_2D") else (o.get("dilation_h", 1), o.get("dilation_w", 1))
        expected = [x.shape[0], _out_size(o["padding"], x.shape[1], (k_h - 1) * dh + 1, sh),
                    _out_size(o["padding"], x.shape[2], (k_w - 1) * dw + 1, sw), channels]
        if list(y.shape) != expected:
            raise _damaged(model, op, f"output shape {list(y.shape)} is not {expected}, which its input "
                                      f"{list(x.shape)}, window {k_h}x{k_w} and options give")
    elif op.name == "FULLY_CONNECTED":
        w = model.tensors[op.inputs[1]]
        if w.quantization is None:
            raise Unsupported("weights without quantization")
        if x.elements % w.shape[1] == 0 and y.elements != x.elements // w.shape[1] * w.shape[0]:
            raise _damaged(model, op, f"output shape {list(y.shape)} does not hold {x.elements // w.shape[1]} "
                                      f"rows of {w.shape[0]} units")
    elif op.name in ("SOFTMAX", "QUANTIZE") and x.elements != y.elements:
        raise _damaged(model, op, f"input shape {list(x.shape)} and output shape {list(y.shape)} differ in size")
    elif op.name == "SOFTMAX" and x.quantization is not None:
        # PreprocessSoftmaxScaling's multiplier must exceed 1 (QuantizeMultiplierGreaterThanOne)
        if not float(o.get("beta", 1.0)) * x.quantization.scales[0] * (1 << (31 - 5)) > 1:
            raise _damaged(model, op, f"beta {o.get('beta', 1.0)} times the input scale "
                                      f"{x.quantization.scales[0]:g} is not above 2^-26")
    elif op.name == "MEAN" and y.elements != x.shape[-1] and len(x.shape) in (3, 4):
        raise _damaged(model, op, f"output shape {list(y.shape)} is not one value per channel of {list(x.shape)}")
    elif op.name == "PAD":
        pads = model.tensors[op.inputs[1]]
        if pads.is_constant and list(pads.shape) != [len(x.shape), 2]:
            raise _damaged(model, op, f"paddings of shape {list(pads.shape)} for a {len(x.shape)}-D input; "
                                      f"expected [{len(x.shape)}, 2]")
        if pads.is_constant and pads.dtype in ("INT32", "INT64"):
            before_after = constant_values(model, op.inputs[1])
            expected = [int(d + b + a) for d, (b, a) in zip(x.shape, before_after)]
            if (before_after < 0).any() or list(y.shape) != expected:
                raise _damaged(model, op, f"output shape {list(y.shape)} is not {expected}, which its input "
                                          f"{list(x.shape)} and paddings {before_after.tolist()} give")


ROWS_FUSED = "td_rows_fused"
# Windowed kernels that run as well on a band of rows (fuse_rows): their fields for the window
# along the rows and its dilation, and for the output channels.
_ROW_KERNELS = {"td_conv_2d": ("k_h", "dil_h", "out_c"), "td_depthwise_conv_2d": ("k_h", "dil_h", "out_c"),
                "td_max_pool_2d": ("f_h", None, "channels"), "td_average_pool_2d": ("f_h", None, "channels")}
# The last layer's output rows a band that row fusion tries, most first. Where a row is one pixel
# (a series), a band holds at least WORK_ORDER.quad of them, for the kernels' four-pixel paths
# down a column: in bands of one pixel, a series model ran half as slow again on the emulated
# board (34035-columns of bench/cengine_unseen.py: 4.14 -> 5.98 instructions per MAC).
ROW_BANDS = (8, 4, 2, 1)
INPUT, OUTPUT = -1, -2    # a band step's source or target: the fused call's input or output tensor
# The least share of the arena a change of order of work must save (choose_for_memory): each
# costs some speed (a slower variant, a kernel call a band), which a few bytes are not worth. On
# bench/cengine_unseen.py's models, taking every saving cost 34002-residual 3.5% more
# instructions for 0.9% less arena.
MIN_SAVING = 1 / 20
FULLY_PLANNED = 4  # the changes a round of choose_for_memory plans fully, the best by a quick plan


@dataclass(frozen=True)
class Rows:
    """A windowed call along the axis its image is streamed by: rows, or columns where it is
    one row high (a series). Counts and stride along it, padding before, the rows one output
    row's window spans, the bytes of an input and an output row, and the struct's fields for the
    input count, output count and padding along it."""
    in_h: int
    out_h: int
    stride: int
    pad: int
    span: int
    in_row: int
    out_row: int
    fields: tuple[str, str, str]
    width: int = 1  # output pixels a row

    @staticmethod
    def of(call: Call) -> "Rows | None":
        if call.kernel not in _ROW_KERNELS or call.parts:
            return None
        window, dilation, channels = _ROW_KERNELS[call.kernel]
        f = {k: int(v) for k, v in call.fields if v.lstrip("-").isdigit()}
        in_c, out_c = f.get("in_c", f.get("channels")), f[channels]
        if f["in_h"] == 1 and f["out_h"] == 1:  # one row: stream its columns
            return Rows(f["in_w"], f["out_w"], f["stride_w"], f["pad_left"],
                        (f[window[0] + "_w"] - 1) * f.get("dil_w", 1) + 1, in_c, out_c, ("in_w", "out_w", "pad_left"))
        return Rows(f["in_h"], f["out_h"], f["stride_h"], f["pad_top"], (f[window] - 1) * f.get(dilation, 1) + 1,
                    f["in_w"] * in_c, f["out_w"] * out_c, ("in_h", "out_h", "pad_top"), f["out_w"])

    def band(self, first: int, end: int) -> tuple[tuple[tuple[str, int], ...], int, int]:
        """Output rows [first, end) as a layer of their own: its fields along the axis, and the
        first input row and number of rows it reads. The rows outside are the real padding, so
        the band computes exactly what the whole layer does for those rows."""
        top = first * self.stride - self.pad
        lo, hi = max(0, top), min(self.in_h, (end - 1) * self.stride - self.pad + self.span)
        return tuple(zip(self.fields, (hi - lo, end - first, lo - top))), lo, hi - lo


@dataclass(frozen=True)
class BandStep:
    """A step of a row-fused call's schedule. part None: row buffer `target`'s bytes from
    source_offset, `size` of them, move to its start. Else windowed part `part` runs on a band
    (`shape`: the fields it overrides), reading from `source` (INPUT or a row buffer's index) at
    source_offset and writing to `target` (OUTPUT or a row buffer) at target_offset, in bytes."""
    part: int | None
    shape: tuple[tuple[str, int], ...] = ()
    source: int = INPUT
    source_offset: int = 0
    target: int = OUTPUT
    target_offset: int = 0
    size: int = 0


@dataclass(frozen=True)
class Fusion:
    """How a row-fused call runs: its schedule, where each row buffer and each windowed part's own
    scratch start in its scratch, and the last layer's output rows a band."""
    schedule: tuple[BandStep, ...]
    buffers: tuple[int, ...]
    scratches: tuple[int, ...]
    rows: int


def row_schedule(rows: list[Rows], n: int) -> tuple[list[BandStep], list[int], int] | None:
    """Run a chain of windowed layers, each reading the one before, band by band: n output rows
    of the last at a time, each layer's rows computed when a later band first needs them and kept
    in its row buffer only while a window spans them, so no output but the last is ever held
    whole. Returns the schedule, each row buffer's bytes, and how far past the start of the
    chain's input its output may begin (as segment_overlap: every band's writes land below each
    input byte a later band reads); None where a band would read no row."""
    buffers = len(rows) - 1
    lo, hi, size = [0] * buffers, [0] * buffers, [0] * buffers  # buffer i holds rows [lo, hi) of layer i
    steps: list[BandStep] = []

    def ensure(i: int, need_lo: int, need_hi: int) -> None:
        """Layer i's rows [need_lo, need_hi) in buffer i, from its start."""
        keep_lo = max(lo[i], need_lo)
        kept = max(0, hi[i] - keep_lo)
        if kept and keep_lo > lo[i]:
            steps.append(BandStep(None, target=i, source_offset=(keep_lo - lo[i]) * rows[i].out_row,
                                  size=kept * rows[i].out_row))
        produce = max(hi[i], need_lo)
        lo[i], hi[i] = need_lo, max(hi[i], need_lo)
        if need_hi > produce:
            run(i, produce, need_hi, i, (produce - need_lo) * rows[i].out_row)
            hi[i] = need_hi
        size[i] = max(size[i], (need_hi - need_lo) * rows[i].out_row)

    def run(j: int, first: int, end: int, target: int, offset: int) -> None:
        shape, in_lo, count = rows[j].band(first, end)
        if count <= 0:
            raise ValueError
        if j == 0:
            source, source_offset = INPUT, in_lo * rows[0].in_row
        else:
            ensure(j - 1, in_lo, in_lo + count)
            source, source_offset = j - 1, 0
        steps.append(BandStep(j, shape, source, source_offset, target, offset))

    last = rows[-1]
    try:
        for first in range(0, last.out_h, n):
            run(len(rows) - 1, first, min(last.out_h, first + n), OUTPUT, first * last.out_row)
    except ValueError:
        return None
    overlap, later_read = 0, None
    for step in reversed(steps):  # each write of the output against the input reads after it
        if step.part == len(rows) - 1 and later_read is not None:
            end = step.target_offset + dict(step.shape)[last.fields[1]] * last.out_row
            overlap = min(overlap, later_read - end)
        if step.part == 0:
            later_read = step.source_offset if later_read is None else min(later_read, step.source_offset)
    return steps, size, overlap


def _aligned(n: int) -> int:
    return (n + memplan.ALIGN - 1) // memplan.ALIGN * memplan.ALIGN


def fuse_rows(parts: list[Call], n: int) -> Call | None:
    """One call for a chain of windowed calls (and the views between), run band by band
    (row_schedule); None where it can't be. Its scratch holds the row buffers, then each
    windowed part's own scratch."""
    windowed = [part for part in parts if not part.view]
    if any(part.above is not None for part in windowed):  # the band schedule runs rows in order
        return None
    rows = [Rows.of(part) for part in windowed]
    if rows[-1].width == 1 and n < min(WORK_ORDER.quad, rows[-1].out_h):
        return None
    scheduled = row_schedule(rows, n)
    if scheduled is None:
        return None
    steps, sizes, overlap = scheduled
    offsets, top = [], 0
    for size in sizes + [part.scratch for part in windowed]:
        offsets.append(top)
        top += _aligned(size)
    first, last = parts[0], parts[-1]
    return Call(first.op, ROWS_FUSED, "", [], list(first.inputs), last.output,
                [a for part in parts for a in part.arrays], macs=sum(part.macs for part in parts), scratch=top,
                overlap=overlap, variant=f"rows{n}", parts=list(parts),
                fusion=Fusion(tuple(steps), tuple(offsets[:len(sizes)]), tuple(offsets[len(sizes):]), n))


def _joinable(model: Model, calls: list[Call]) -> list[tuple[int, int]]:
    """(first, last) indices of each run of calls row fusion may join into one: a call (or a
    row-fused call), views, then a call (or a row-fused call), the windowed calls at the seam
    lined up row for row, each tensor between read by the next call alone."""
    readers: dict[int, int] = {}
    for op in model.operators:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    joins = []
    for i, call in enumerate(calls):
        if call.view or Rows.of(call.members[-1]) is None:
            continue
        j = i + 1
        while j < len(calls) and calls[j].view and calls[j].inputs == [calls[j - 1].output]:
            j += 1
        if j >= len(calls) or calls[j].view or calls[j].inputs != [calls[j - 1].output]:
            continue
        p, c = Rows.of(call.members[-1]), Rows.of(calls[j].members[0])
        between = [calls[k].output for k in range(i, j)]
        if (c is None or c.in_h != p.out_h or c.in_row != p.out_row or model.outputs[0] in between
                or any(readers.get(t, 0) != 1 for t in between)):
            continue
        joins.append((i, j))
    return joins


def plan_memory(model: Model, calls: list[Call], shuffles: int = memplan.ORDERS) -> memplan.Plan:
    """The static memory plan of the calls as they stand (shuffles: as memplan.plan)."""
    sizes = {}
    for call in calls:
        for t in call.inputs + [call.output]:
            sizes[t] = model.tensors[t].nbytes
    sizes[model.inputs[0]] = model.tensors[model.inputs[0]].nbytes
    steps = [memplan.Step(c.inputs, c.output, view_of=c.inputs[0] if c.view else None, in_place=c.in_place,
                          scratch=c.scratch, overlap=c.overlap, above=c.above) for c in calls]
    return memplan.plan(steps, sizes, [model.inputs[0]], [model.outputs[0]], shuffles)


def choose_for_memory(model: Model, calls: list[Call]) -> tuple[list[Call], memplan.Plan]:
    """Plan the arena, each call in the cost model's pick (its first option); then, while some
    change makes the arena smaller, the change that saves most: another option of a call, of
    the same variant (an order of work only, as fast: any saving) or one that asks less of the
    plan (Option.weaker_than: a slower variant, MIN_SAVING or more), or neighbouring windowed
    calls row-fused (fuse_rows, with the most rows a band that saves as much; MIN_SAVING or
    more). Memory comes first: an arena that does not fit does not run, a kernel a few percent
    slower does; but only the calls that set the arena change. Ties go to an option over a
    fusion, and to more rows a band."""
    calls = list(calls)
    plan = plan_memory(model, calls)
    while True:
        tried: list[tuple[int, tuple, list[Call]]] = []  # each change: a quick plan's arena, its rank, the calls

        def consider(changed: list[Call], rank: tuple) -> None:
            tried.append((plan_memory(model, changed, shuffles=0).size, rank, changed))

        for index, call in enumerate(calls):
            for part_index, part in enumerate(call.members):
                for option in part.options:
                    if part.taken is None or option == part.taken:
                        continue
                    free = option.variant == part.taken.variant
                    if not free and not option.weaker_than(part.taken):
                        continue
                    changed = _with_option(part, option)
                    if call.parts:
                        parts = list(call.parts)
                        parts[part_index] = changed
                        changed = fuse_rows(parts, call.fusion.rows)
                    if changed is not None:
                        consider(calls[:index] + [changed] + calls[index + 1:], (0, 0, not free))
        for first, last in _joinable(model, calls):
            parts = [member for call in calls[first:last + 1] for member in call.members]
            for n in ROW_BANDS:
                fused = fuse_rows(parts, n)
                if fused is not None:
                    consider(calls[:first] + [fused] + calls[last + 1:], (1, -n, True))
        # the changes ranked by a quick plan (no shuffled orders); the best few planned fully
        best = None
        for _, rank, changed in sorted(tried, key=lambda t: t[:2])[:FULLY_PLANNED]:
            full = plan_memory(model, changed)
            enough = full.size <= plan.size * (1 - MIN_SAVING) if rank[-1] else full.size < plan.size
            if enough and (best is None or (full.size, rank) < best[:2]):
                best = (full.size, rank, changed, full)
        if best is None:
            return calls, plan
        calls, plan = best[2], best[3]


def _with_option(call: Call, option: Option) -> Call:
    """A copy of call that takes option."""
    changed = replace(call, fields=list(call.fields))
    changed.take(option)
    return changed


def lower(model: Model) -> Lowered:
    """Lower a model to kernel calls and a static memory plan. Shape arithmetic is folded
    first (tinydeploy.codegen.cengine.folding).

    Raises:
        BadInput: the model is not a single-input, single-output int8 model, or it
            has operators (or variants) the C engine lacks; every one is listed.
    """
    problems = []
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        problems.append(f"{len(model.inputs)} inputs and {len(model.outputs)} outputs (the C engine takes one of each)")
    elif any(t.dtype != "INT8" for t in model.input_tensors + model.output_tensors):
        problems.append("input and output must be int8")
    if model.other_subgraph_ops:
        problems.append("more than one subgraph")
    calls = []
    missing: dict[str, list[str]] = {}
    folded = folding.fold(model)  # shape arithmetic: computed now, no run-time work
    for op in model.operators:
        if op.index in folded.dropped:
            continue
        if op.name not in _LOWER:
            missing.setdefault(op.name, [])
            continue
        try:
            mismatch = folding.target_mismatch(model, op, folded)
            if mismatch:
                raise Unsupported(mismatch)
            _check_operands(model, op)
            call = _LOWER[op.name](model, op, f"op{op.index}")
            call.macs = op_macs(model, op)
            calls.append(call)
        except Unsupported as exc:
            missing.setdefault(op.name, []).append(str(exc))
    if missing:
        parts = [name + (f" ({'; '.join(sorted(set(why)))})" if why else "") for name, why in sorted(missing.items())]
        problems.append(f"operators the C engine lacks: {', '.join(parts)}. "
                        f"The C engine has {', '.join(ENGINE_OPS)}")
    if problems:
        raise BadInput(f"{model.path}: " + "; ".join(problems) + ". Render with --engine tflm instead")
    calls, plan = choose_for_memory(model, calls)
    # The tensor-level bound of the whole graph, as inspect reports it; the plan's own bound
    # (plan.peak_live) counts the tensors that share a buffer once.
    return Lowered(model, calls, plan, model.inputs[0], model.outputs[0], liveness.activation_lower_bound(model))
