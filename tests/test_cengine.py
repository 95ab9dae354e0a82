"""The C engine: bit-exact kernels, the static memory plan, rendering for ESP32 and the
emulated RISC-V board, and the whole render -> cross-compile -> boot -> bench -> validate ->
verify path on that board."""

import ctypes
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinydeploy.codegen import cengine
from tinydeploy.costs import memplan
from tinydeploy.core.boards import get_board
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.model import load_model, parse_model
from tinydeploy.codegen.render import RenderOptions, render
from tinydeploy.core.resources import shipped
from tests.helpers import run_cli

FLAGS = ["-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror"]


# ---- TFLite's arithmetic, as Python integers (the reference for the C kernels) ----

def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul exactly as TFLite writes it (division truncating toward zero)."""
    if a == b == -(2 ** 31):
        return 2 ** 31 - 1
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31
    return q if v >= 0 else -q


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot(srdhm(x * (1 << left), multiplier), right)


@pytest.fixture(scope="module")
def kernels_lib(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kernels")
    firmware = shipped("firmware")
    library = folder / "kernels.so"
    subprocess.run(["gcc", *FLAGS, "-shared", "-fPIC", "-I", str(firmware), "-o", str(library),
                    str(firmware / "td_kernels.c")], check=True)
    lib = ctypes.CDLL(str(library))
    lib.td_multiply_by_quantized_multiplier.argtypes = [ctypes.c_int32, ctypes.c_void_p]
    lib.td_multiply_by_quantized_multiplier.restype = ctypes.c_int32
    lib.td_requant_fast_offset.argtypes = [ctypes.c_int32, ctypes.c_void_p, ctypes.c_int32]
    lib.td_requant_fast_offset.restype = ctypes.c_int32
    return lib


class Requant(ctypes.Structure):  # td_requant
    _fields_ = [("multiplier", ctypes.c_int32), ("round_offset", ctypes.c_int32),
                ("left", ctypes.c_int16), ("right", ctypes.c_int8), ("fast_shift", ctypes.c_int8)]


@pytest.mark.unit
@pytest.mark.parametrize("real, expected", [(0.5, (1 << 30, 0)), (0.25, (1 << 30, -1)), (1.0, (1 << 30, 1)),
                                            (1 / 3, (1431655765, -1)), (0.0, (0, 0))])
def test_quantize_multiplier_matches_tflite(real, expected):
    assert cengine.quantize_multiplier(real) == expected


@pytest.mark.unit
@given(st.floats(min_value=1e-9, max_value=1e3, allow_nan=False))
def test_quantize_multiplier_represents_the_real_value(real):
    multiplier, shift = cengine.quantize_multiplier(real)
    assert (1 << 30) <= multiplier < (1 << 31)
    assert math.isclose(multiplier * 2.0 ** (shift - 31), real, rel_tol=2 ** -30)


@pytest.mark.host
@settings(max_examples=3000, deadline=None)
@given(acc=st.integers(-(2 ** 30) + 1, 2 ** 30 - 1), real=st.floats(1e-6, 0.99), left=st.sampled_from([0, 0, 0, 2]))
def test_requantization_is_tflites_double_rounding(kernels_lib, acc, real, left):
    """The kernels' shortcut (one high multiply, one rounding shift) gives TFLite's result, and so
    does lowering's Python copy."""
    multiplier, shift = cengine.quantize_multiplier(real)
    shift += left
    acc >>= left  # keep acc * 2^left in int32, as TFLite requires
    fields = Requant(*cengine.requant_fields(multiplier, shift))
    got = kernels_lib.td_multiply_by_quantized_multiplier(acc, ctypes.addressof(fields))
    assert got == multiply_by_quantized_multiplier(acc, multiplier, shift)
    # and lowering's own copy (it computes the ADD kernel's tables) agrees with this reference
    assert cengine.arithmetic.multiply_by_quantized_multiplier(acc, multiplier, shift) == got


@pytest.mark.host
@settings(max_examples=3000, deadline=None)
@given(acc=st.one_of(st.integers(-(2 ** 29) + 1, 2 ** 29 - 1), st.integers(-300, 300)),
       real=st.one_of(st.floats(1e-6, 0.49), st.sampled_from([2.0 ** -k for k in range(2, 20)])),
       offset=st.integers(-128, 127))
def test_fast_requantization_is_tflites_double_rounding_plus_the_offset(kernels_lib, acc, real, offset):
    """One high multiply of the quadrupled accumulator and one shift give TFLite's two roundings
    plus the output offset (a power of two hits the multiplier 2^30 and its acc = -1 case); with the
    correction dropped (neg 0) only outputs at or below the offset may differ."""
    multiplier, shift = cengine.quantize_multiplier(real)
    fields = Requant(*cengine.requant_fields(multiplier, shift, offset))
    assert fields.left == 0 and fields.right >= 1
    expected = multiply_by_quantized_multiplier(acc, multiplier, shift) + offset
    assert kernels_lib.td_requant_fast_offset(acc, ctypes.addressof(fields), -2) == expected
    relu = kernels_lib.td_requant_fast_offset(acc, ctypes.addressof(fields), 0)
    assert relu == expected or max(relu, expected) <= offset


# ---- the static memory plan ------------------------------------------------

@pytest.mark.unit
@settings(max_examples=200, deadline=None)
@given(st.data())
def test_plan_never_overlaps_live_buffers(data):
    n = data.draw(st.integers(1, 12))
    sizes = {0: data.draw(st.integers(1, 500))}
    steps = []
    for i in range(1, n + 1):
        earlier = list(range(i))
        inputs = data.draw(st.lists(st.sampled_from(earlier), min_size=1, max_size=2, unique=True))
        sizes[i] = data.draw(st.integers(1, 500))
        view = data.draw(st.booleans()) and sizes[inputs[0]] == sizes[i]
        overlap = data.draw(st.one_of(st.none(), st.integers(-600, -1), st.integers(1, 600)))
        below, above = (None, None) if overlap is None else (overlap, None) if overlap < 0 else (None, overlap)
        steps.append(memplan.Step(inputs, i, view_of=inputs[0] if view else None, in_place=data.draw(st.booleans()),
                                  scratch=data.draw(st.sampled_from([0, 0, 64])), overlap=below, above=above))
    plan = memplan.plan(steps, sizes, [0], [n])
    if all(step.overlap is None and step.above is None for step in steps):
        assert plan.size >= plan.peak_live
    owner = {t: b for b in plan.buffers for t in b.tensors}
    # Which (output buffer, input buffer) pairs may share bytes: a step's only input, dying there.
    allowed = {(id(owner[s.output]), id(owner[s.inputs[0]])): (s.overlap, s.above) for i, s in enumerate(steps)
               if (s.overlap, s.above) != (None, None) and len(s.inputs) == 1 and owner[s.inputs[0]].last == i
               and owner[s.output].first == i and owner[s.output] is not owner[s.inputs[0]] and s.inputs[0] != n}
    for a in plan.buffers:
        assert a.offset % memplan.ALIGN == 0 and a.offset >= 0 and a.offset + a.size <= plan.size
        for b in plan.buffers:
            if a is not b and a.overlaps_in_time(b) and not (a.offset + a.size <= b.offset or
                                                               b.offset + b.size <= a.offset):
                assert (id(a), id(b)) in allowed or (id(b), id(a)) in allowed
                out, source = (a, b) if (id(a), id(b)) in allowed else (b, a)
                below, above = allowed[(id(out), id(source))]
                assert (out.offset - source.offset <= below if below is not None else
                        out.offset - source.offset >= above)
    for step in steps:
        if step.view_of is not None:
            assert plan.offsets[step.view_of] == plan.offsets[step.output]


@pytest.mark.unit
def test_a_backward_overlap_lets_an_expanding_layer_end_near_its_inputs_end():
    """A chain whose middle layer widens its input (288 -> 720 bytes) and whose next layer may
    write just below its own input: written over its input from below, the wide output sticks
    out under the next output's room; from above (the reverse order), the plan is only the wide
    layer's output plus the input bytes its first group still reads."""
    sizes = {0: 288, 1: 720, 2: 180}
    forward = memplan.plan([memplan.Step([0], 1, overlap=-464), memplan.Step([1], 2, overlap=-20)], sizes, [0], [2])
    backward = memplan.plan([memplan.Step([0], 1, above=32), memplan.Step([1], 2, overlap=-20)], sizes, [0], [2])
    assert (forward.size, backward.size) == (772, 752)
    assert backward.offsets[1] - backward.offsets[0] == 32


def _same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    out = (size + stride - 1) // stride
    return out, max(0, ((out - 1) * stride + (k - 1) * dilation + 1 - size) // 2)


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_segment_overlap_never_overwrites_an_input_byte_before_its_last_read(data):
    """The kernels' order of work, byte by byte: output pixels in row-major order, in groups of
    up to `together` consecutive pixels (the convolution's run on into the next row; the
    depthwise kernel's stay in a row, or run down a one-pixel-wide layer), and within a group
    channel chunk by chunk: a convolution reads every input channel of the group's windows and
    writes four output channels, a depthwise or pooling layer reads and writes one channel. Half
    the draws are a depthwise layer tall enough for the kernel's border columns (below). The
    output starts segment_overlap bytes past the input: no read finds a byte already written."""
    from tinydeploy.codegen.cengine.lowering import WORK_ORDER, border_columns_ahead, segment_overlap
    QUAD = WORK_ORDER.quad
    border = data.draw(st.booleans())
    in_h, in_w, in_c, out_c = (data.draw(st.integers(1, 9)) for _ in range(4))
    if border:
        in_h = data.draw(st.integers(6, 16))
    k_h, k_w = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    sh, sw, dh, dw = (data.draw(st.integers(1, 3)) for _ in range(4))
    if data.draw(st.booleans()):  # SAME
        (out_h, pad_top), (out_w, pad_left) = _same_padding(in_h, k_h, sh, dh), _same_padding(in_w, k_w, sw, dw)
    else:
        out_h, out_w, pad_top, pad_left = ((in_h - (k_h - 1) * dh - 1) // sh + 1, (in_w - (k_w - 1) * dw - 1) // sw + 1,
                                           0, 0)
    if out_h < 1 or out_w < 1:
        return
    together = QUAD if border else data.draw(st.sampled_from([1, 2, QUAD]))
    channelwise = border or data.draw(st.booleans())  # depthwise or pooling: one channel in, the same one out
    if channelwise:
        out_c = in_c
    # The depthwise kernel's border columns: four rows whose windows cover every row, four
    # pixels down each column whose windows miss a column, before those rows' other pixels.
    full_rows = [all(0 <= oy * sh - pad_top + ky * dh < in_h for ky in range(k_h)) for oy in range(out_h)]
    full_columns = [all(0 <= ox * sw - pad_left + kx * dw < in_w for kx in range(k_w)) for ox in range(out_w)]
    border = border and out_w > 1
    ahead = 0
    if border:
        rows = [oy for oy in range(out_h) if full_rows[oy]] or [0]
        columns = [ox for ox in range(out_w) if full_columns[ox]] or [0]
        ahead = border_columns_ahead(out_h, out_w, (rows[0], rows[-1] + 1 if any(full_rows) else 0),
                                     (columns[0], columns[-1] + 1 if any(full_columns) else 0))
    overlap = segment_overlap(in_w, in_c, out_h, out_w, out_c, sh, sw, pad_top, pad_left, together, ahead)
    overlap = overlap // memplan.ALIGN * memplan.ALIGN
    assert overlap < 0
    base = -overlap  # the input's start; the output starts at 0
    overwritten = np.zeros(base + max(in_h * in_w * in_c, overlap + out_h * out_w * out_c), dtype=bool)
    pixels = out_h * out_w
    within_rows = border or out_w > 1 and data.draw(st.booleans())
    groups, q, edge_done = [], 0, 0
    while q < pixels:
        oy, ox = divmod(q, out_w)
        if border and ox == 0 and oy >= edge_done and oy + QUAD <= out_h and all(full_rows[oy:oy + QUAD]):
            groups += [range(oy * out_w + x, (oy + QUAD) * out_w + x, out_w)
                       for x in range(out_w) if not full_columns[x]]
            edge_done = oy + QUAD
        if border and oy < edge_done and not full_columns[ox]:
            q += 1
            continue
        room = out_w - ox if within_rows else pixels - q
        if border:  # a group of the row's pixels stops at a border column done already
            room = next((n for n in range(1, room) if oy < edge_done and not full_columns[ox + n]), room)
        size = data.draw(st.integers(1, min(together, room)))
        groups.append(range(q, q + size))
        q += size
    chunks = ([([c], [c]) for c in range(in_c)] if channelwise else
              [(range(in_c), range(c, min(c + 4, out_c))) for c in range(0, out_c, 4)])
    for group in groups:
        for read, written in chunks:
            for px in group:
                oy, ox = divmod(px, out_w)
                for ky in range(k_h):
                    for kx in range(k_w):
                        iy, ix = oy * sh - pad_top + ky * dh, ox * sw - pad_left + kx * dw
                        if 0 <= iy < in_h and 0 <= ix < in_w:
                            start = base + (iy * in_w + ix) * in_c
                            assert not any(overwritten[start + c] for c in read), f"pixel {px} reads a written byte"
            for px in group:
                for c in written:
                    overwritten[px * out_c + c] = True


@pytest.mark.unit
@settings(max_examples=300, deadline=None)
@given(pixels=st.integers(1, 40), in_c=st.integers(1, 12), out_c=st.integers(1, 24))
def test_a_reverse_pointwise_layer_never_overwrites_an_input_byte_before_its_last_read(pixels, in_c, out_c):
    """td_conv's reverse order, byte by byte: the last pixels % 4 pixels one at a time, last
    first, then fours down to pixel 0; in each, four output channels at a time after reading
    every input channel of its pixels. With the output starting reverse_overlap bytes past the
    input (rounded up as the planner does), no read finds a byte already written; one byte
    lower, a group's first channels would land on its own inputs still read for the rest."""
    from tinydeploy.codegen.cengine.lowering import WORK_ORDER, reverse_overlap

    def clashes(start: int) -> bool:
        overwritten = np.zeros(start + pixels * max(in_c, out_c) + pixels * out_c, dtype=bool)
        quads = pixels - pixels % WORK_ORDER.quad
        groups = [range(a, a + 1) for a in range(pixels - 1, quads - 1, -1)]
        groups += [range(a, a + WORK_ORDER.quad) for a in range(quads - WORK_ORDER.quad, -1, -WORK_ORDER.quad)]
        for group in groups:
            for c in range(0, out_c, 4):
                if any(overwritten[px * in_c:(px + 1) * in_c].any() for px in group):
                    return True
                for px in group:
                    overwritten[start + px * out_c + c:start + px * out_c + min(c + 4, out_c)] = True
        return False

    above = reverse_overlap(pixels, in_c, out_c)
    start = -(-above // memplan.ALIGN) * memplan.ALIGN
    assert above > 0 and not clashes(start)
    if out_c > 4:
        assert clashes(above - 1)


# ---- bit-exact with TFLite's reference kernels -------------------------------

@pytest.fixture(scope="module")
def zoo():
    from tests import models
    return {name: parse_model(data, name) for name, data in models.kernel_zoo().items()}


@pytest.mark.host
def test_the_zoo_covers_every_kernel_and_variant(zoo):
    ops = [op for m in zoo.values() for op in m.operators]
    names = {op.name for op in ops}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN", "ADD",
            "RESHAPE", "PAD", "SOFTMAX", "EXPAND_DIMS", "QUANTIZE", "SHAPE", "STRIDED_SLICE", "PACK"} <= names
    convs = [op for op in ops if op.name in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert {op.options["stride_h"] for op in convs} >= {1, 2}
    assert {op.options["padding"] for op in convs} == {"SAME", "VALID"}
    kernel_sizes = {m.tensors[op.inputs[1]].shape[1] for m in zoo.values() for op in m.operators if op in convs}
    assert kernel_sizes >= {1, 2, 3, 4, 5}
    depthwise = [(m, op) for m in zoo.values() for op in m.operators if op.name == "DEPTHWISE_CONV_2D"]
    assert {m.tensors[op.outputs[0]].shape[3] // m.tensors[op.inputs[0]].shape[3] for m, op in depthwise} >= {1, 2, 3}
    shapes = [m.tensors[op.outputs[0]].shape for m, op in depthwise]
    assert any(s[2] == 1 and s[1] > 1 and s[3] % 4 for s in shapes)  # one column (row pairs), channels 4 + rest
    small = [dict(c.fields) for m in zoo.values() for c in cengine.lower(m).members  # unrolled whole (dw_small())
             if c.kernel == "td_depthwise_conv_2d" and dict(c.fields)["small"] == "1"]
    assert {f["out_w"] == "1" for f in small} == {True, False} and {f["dil_h"] for f in small} >= {"1", "2"}
    assert {f["stride_h"] for f in small} >= {"1", "2"}
    assert {op.options["activation"] for op in convs} >= {"NONE", "RELU", "RELU6"}
    pools = [op for op in ops if op.name.endswith("POOL_2D")]
    assert {op.options["padding"] for op in pools} == {"SAME", "VALID"}
    assert {op.options.get("keep_dims") for op in ops if op.name == "MEAN"} == {True, False}


@pytest.mark.host
@pytest.mark.parametrize("spread", [0.3, 3.0, 40.0])
def test_softmax_is_bit_exact_for_every_input_difference(tmp_path, spread):
    """The softmax's exp table (tinydeploy's copy of gemmlowp's fixed point) against
    TFLite on every pair of int8 inputs, so on every difference 0..255, for input
    scales whose radius cuts the differences off early, late and not at all."""
    from tinydeploy.runtime import _tf
    from tinydeploy.runtime.evaluate import reference_outputs
    from tinydeploy.optimize.convert import to_int8_tflite
    keras = _tf.keras()
    inputs = keras.layers.Input((2,))
    data = np.random.default_rng(1).normal(0, spread, (64, 2)).astype(np.float32)
    model = parse_model(to_int8_tflite(keras.Model(inputs, keras.layers.Softmax()(inputs)), data))
    grid = np.stack(np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)), -1).reshape(-1, 2).astype(np.int8)
    host = cengine.HostModel(cengine.lower(model), tmp_path, flags=tuple(FLAGS))
    expected = reference_outputs(model, grid).reshape(len(grid), -1)
    got = host.predict(grid).reshape(len(grid), -1)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} outputs differ"


@pytest.mark.host
@pytest.mark.parametrize("name", ["convs", "depthwise", "pools_pads", "series", "requantized", "shape_arithmetic",
                                  "columns", "convs_int4", "columns_int4"])
def test_c_engine_is_bit_exact_on_random_inputs(zoo, tmp_path, name):
    from tinydeploy.runtime.evaluate import reference_outputs
    model = zoo[name]
    lowered = cengine.lower(model)
    host = cengine.HostModel(lowered, tmp_path, flags=tuple(FLAGS))
    x = np.random.default_rng(3).integers(-128, 128, size=(200, *model.input_tensors[0].shape[1:]), dtype=np.int8)
    expected = reference_outputs(model, x).reshape(len(x), -1)
    got = host.predict(x).reshape(len(x), -1)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} outputs differ"
    # The static plan is within 5% of the live-tensor lower bound (views can beat it), or within
    # 16 bytes of it on a tiny model (4-byte aligned buffers, placed first-fit).
    assert lowered.arena_bytes <= max(1.05 * lowered.lower_bound, lowered.lower_bound + 16)
    if name in ("depthwise", "requantized"):  # chains: outputs written over the inputs they have consumed
        assert lowered.arena_bytes <= 0.75 * lowered.lower_bound
        assert _overlapped_layers(lowered)


@pytest.mark.host
def test_an_expanding_pointwise_layer_runs_backwards_over_its_input_and_stays_bit_exact(tmp_path):
    """A pointwise layer that widens 6x6x8 to 6x6x20, then a 5x5 stride-2 depthwise layer that
    may write just below its input: lowering runs the pointwise layer in reverse over its
    input's tail, which brings the arena from 772 to 752 bytes (the wide output plus the 32
    input bytes its first four pixels read), and the outputs are TFLite's."""
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf
    from tinydeploy.runtime.evaluate import reference_outputs
    keras = _tf.keras()
    keras.utils.set_random_seed(5)
    inputs = keras.layers.Input((6, 6, 8))
    x = keras.layers.Conv2D(20, 1, activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(5, strides=2, padding="same")(x)
    outputs = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    data = np.random.default_rng(5).normal(0, 1, (64, 6, 6, 8)).astype(np.float32)
    model = parse_model(to_int8_tflite(keras.Model(inputs, outputs), data))
    lowered = cengine.lower(model)
    pointwise = next(c for c in lowered.members if c.kernel == "td_conv_2d")
    assert dict(pointwise.fields)["reverse"] == "1" and pointwise.above == 32
    assert (lowered.arena_bytes, lowered.lower_bound) == (752, 1008)
    host = cengine.HostModel(lowered, tmp_path, flags=tuple(FLAGS))
    x = np.random.default_rng(6).integers(-128, 128, size=(200, 6, 6, 8), dtype=np.int8)
    assert np.array_equal(host.predict(x).reshape(len(x), -1), reference_outputs(model, x).reshape(len(x), -1))


@pytest.mark.host
@pytest.mark.parametrize("name", ["convs", "depthwise", "columns"])
def test_the_general_requantization_path_is_bit_exact_too(zoo, tmp_path, monkeypatch, name):
    """Every layer of the zoo takes the fast requantization (right shifts only); a layer whose
    multiplier exceeds 1 does not. Lowered as if none could, the kernels' other path (requant()
    and the output offset, in every output stage) must agree with TFLite just as well."""
    from tinydeploy.codegen.cengine import lowering
    from tinydeploy.runtime.evaluate import reference_outputs
    monkeypatch.setattr(lowering, "_fast", lambda rq, bound: False)
    model = zoo[name]
    lowered = cengine.lower(model)
    assert all(dict(call.fields).get("fast_requant", "0") == "0" for call in lowered.members)
    host = cengine.HostModel(lowered, tmp_path, flags=tuple(FLAGS))
    x = np.random.default_rng(5).integers(-128, 128, size=(100, *model.input_tensors[0].shape[1:]), dtype=np.int8)
    expected = reference_outputs(model, x).reshape(len(x), -1)
    assert np.array_equal(host.predict(x).reshape(len(x), -1), expected)


def _overlapped_layers(lowered) -> list[str]:
    """The layers whose output shares bytes with their input in the plan."""
    plan, tensors = lowered.plan, lowered.model.tensors
    shared = []
    for call in lowered.calls:
        if call.overlap is None:
            continue
        a, b = plan.offsets[call.inputs[0]], plan.offsets[call.output]
        if a < b + tensors[call.output].nbytes and b < a + tensors[call.inputs[0]].nbytes:
            shared.append(call.op.name)
    return shared


@pytest.mark.host
def test_int4_convolution_weights_stay_packed(zoo):
    packed, unpacked = cengine.lower(zoo["convs_int4"]), cengine.lower(zoo["convs"])
    assert sum(t.dtype == "INT4" for t in zoo["convs_int4"].tensors) == 6
    for a, b in zip(packed.members, unpacked.members):
        if a.kernel == "td_conv_2d":
            assert ("int4_weights", "1") in a.fields and a.arrays[0].values.size * 2 == b.arrays[0].values.size
    # Depthwise weights (k x k x channels bytes) are unpacked when the C is made: reading nibbles
    # in its inner loop would cost more instructions than the few bytes are worth.
    columns = cengine.lower(zoo["columns_int4"])
    assert any(c.kernel == "td_depthwise_conv_2d" for c in columns.members)
    halved = sum(b.arrays[0].values.size // 2 for b in unpacked.members if b.kernel == "td_conv_2d")
    assert halved > 1000 and packed.weight_bytes == unpacked.weight_bytes - halved


@pytest.mark.host
def test_shape_arithmetic_is_folded_and_each_target_checked(zoo):
    from tinydeploy.codegen.cengine import folding
    model = zoo["shape_arithmetic"]
    assert [c.op.name for c in cengine.lower(model).calls] == ["RESHAPE", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    folded = folding.fold(model)
    reshape = next(op for op in model.operators if op.name == "RESHAPE")
    assert folding.target_mismatch(model, reshape, folded) is None
    wrong = folding.Folded({**folded.values, reshape.inputs[1]: np.array([1, 6, 2, 3])}, folded.dropped)
    assert folding.target_mismatch(model, reshape, wrong) == "its computed shape [1, 6, 2, 3] is not its output's [1, 12, 1, 3]"


@pytest.mark.host
def test_c_engine_is_bit_exact_on_real_validation_inputs(int8_cnn, tmp_path):
    from tinydeploy.core import data
    from tinydeploy.runtime.evaluate import quantize_input, reference_outputs
    model = load_model(int8_cnn)
    dataset = data.load("digits", image_size=32)
    x = quantize_input(model, dataset.x_val)
    host = cengine.HostModel(cengine.lower(model), tmp_path, flags=tuple(FLAGS))
    assert np.array_equal(host.predict(x).reshape(len(x), -1), reference_outputs(model, x).reshape(len(x), -1))


@pytest.mark.host
def test_missing_operators_are_all_listed(unsupported_ops_model):
    with pytest.raises(BadInput) as err:
        cengine.lower(load_model(unsupported_ops_model))
    message = str(err.value)
    assert "TOPK_V2" in message and "REDUCE_PROD" in message and "--engine tflm" in message
    assert "CONV_2D" in message  # what the engine does have


# ---- the order of work: the kernels' against lowering's -----------------------

WINDOWED = ("td_conv_2d", "td_depthwise_conv_2d", "td_max_pool_2d", "td_average_pool_2d")
TRACE = """static int8_t *trace_out;
static int32_t *trace_log;
static int32_t trace_n, trace_cap;
static void trace_store(const int8_t *address) {
  if (trace_n < trace_cap) trace_log[trace_n] = (int32_t)(address - trace_out);
  ++trace_n;
}
#define TD_STORE(base, index, value) (trace_store(&(base)[index]), (base)[index] = (value))
void trace_start(int8_t *out, int32_t *log, int32_t cap) {
  trace_out = out;
  trace_log = log;
  trace_cap = cap;
  trace_n = 0;
}
int32_t trace_count(void) { return trace_n; }
"""


def _windowed_runs(lowered) -> list[tuple[str, object]]:
    """(name, call) of each windowed layer (a row-fused call's parts too), as lowering took it,
    and again in each order of work that writes its output over its input from above (a
    pointwise layer in reverse, Option.above), which the memory plan takes where it gains."""
    from tinydeploy.codegen.cengine.lowering import _with_option
    runs = []
    for call in (c for c in lowered.members if c.kernel in WINDOWED):
        runs.append((f"op{call.op.index}", call))
        runs += [(f"op{call.op.index}_above", _with_option(call, option)) for option in call.options
                 if option.above is not None and option != call.taken]
    return runs


def _layer_runner(lowered, folder: Path, trace: bool) -> ctypes.CDLL:
    """The kernels and, for each windowed run (_windowed_runs), run_<name>(input, output,
    scratch): its kernel alone on the buffers given, specialized as td_model.c specializes it
    (its parameters and arrays as td_model.c declares them). With trace, every output store is
    recorded in order (TD_STORE) and the code is built at -O0, which keeps that order and
    compiles fast."""
    from tinydeploy.codegen.cengine.source import KERNEL_FILES, SPECIALIZED
    from tinydeploy.codegen.templating import copied_firmware
    folder.mkdir(parents=True)
    for name, text in copied_firmware(KERNEL_FILES, folder="").items():
        (folder / name).write_text(text)
    values = cengine.source_values(lowered, "order of work")
    runs = _windowed_runs(lowered)
    names = {f"op{c.op.index}" for _, c in runs}
    lines = ["#include <stdint.h>", TRACE if trace else "", '#include "td_kernels.c"']
    for array in values["arrays"]:
        if array["name"].split("_")[0] in names:
            lines += [f"static const {array['ctype']} {array['name']}[{array['length']}] = {{", *array["rows"], "};"]
    for name, call in runs:  # each whole layer's parameters, as td_model.c declares an unfused layer's
        lines += [f"static const {call.struct} {name} = {{", *(f"  .{field} = {value}," for field, value in call.fields),
                  "};"]
    for name, call in runs:
        kernel = call.kernel + "_inline" if call.kernel in SPECIALIZED else call.kernel
        args = "input, output, scratch" if call.kernel == "td_conv_2d" else "input, output"
        lines += [f"void run_{name}(const int8_t *input, int8_t *output, int8_t *scratch) {{",
                  f"  (void)scratch;\n  {kernel}(&{name}, {args});", "}"]
    (folder / "runner.c").write_text("\n".join(lines) + "\n")
    library = folder / "runner.so"
    flags = [flag if flag != "-O2" or not trace else "-O0" for flag in FLAGS]
    subprocess.run(["gcc", *flags, "-shared", "-fPIC", "-I", str(folder), "-o", str(library), str(folder / "runner.c")],
                   check=True)
    return ctypes.CDLL(str(library))


def _run_layer(lib, name: str, arena: np.ndarray, input_at: int, output_at: int, scratch: np.ndarray) -> None:
    address = arena.ctypes.data
    getattr(lib, f"run_{name}")(ctypes.c_void_p(address + input_at), ctypes.c_void_p(address + output_at),
                                ctypes.c_void_p(scratch.ctypes.data))


def _last_needed(call, written: np.ndarray) -> np.ndarray:
    """For each input byte of a windowed layer, when the last output whose window reads it is
    written (its index in the order of writes; -1: none reads it). A convolution's output pixel
    reads every channel of its window, a depthwise or pooling one channel c // multiplier."""
    f = {name: int(value) for name, value in call.fields if value.lstrip("-").isdigit()}
    if call.kernel in ("td_max_pool_2d", "td_average_pool_2d"):
        k_h, k_w, dh, dw, in_c, out_c, multiplier = f["f_h"], f["f_w"], 1, 1, f["channels"], f["channels"], 1
    else:
        k_h, k_w, dh, dw, in_c, out_c = f["k_h"], f["k_w"], f["dil_h"], f["dil_w"], f["in_c"], f["out_c"]
        multiplier = f.get("depth_multiplier")  # none: a convolution
    oy, ox = np.divmod(np.arange(f["out_h"] * f["out_w"]), f["out_w"])
    when = written.reshape(-1, out_c)
    needed = np.full(f["in_h"] * f["in_w"] * in_c, -1)
    for ky in range(k_h):
        for kx in range(k_w):
            iy, ix = oy * f["stride_h"] - f["pad_top"] + ky * dh, ox * f["stride_w"] - f["pad_left"] + kx * dw
            inside = (iy >= 0) & (iy < f["in_h"]) & (ix >= 0) & (ix < f["in_w"])
            first = ((iy * f["in_w"] + ix) * in_c)[inside][:, None]
            if multiplier is None:
                index, value = first + np.arange(in_c), np.repeat(when[inside].max(1)[:, None], in_c, 1)
            else:
                index, value = first + np.arange(out_c) // multiplier, when[inside]
            np.maximum.at(needed, index.reshape(-1), value.reshape(-1))
    return needed


def _kernel_bound(needed: np.ndarray, written: np.ndarray) -> int | None:
    """The highest start of the output (bytes past the input's start) at and below which no
    write lands on an input byte that an output written later still reads; None: any start.
    Output byte k written at step written[k] lands on input byte k + start, which is safe
    unless needed[k + start] > written[k]."""
    steps, far = len(written), len(needed) + len(written) + 1
    first_at = np.full(steps + 1, far)  # lowest input byte whose last reader is written at each step
    read = needed >= 0
    np.minimum.at(first_at, needed[read], np.nonzero(read)[0])
    lowest_after = np.minimum.accumulate(first_at[::-1])[::-1]  # lowest byte still read after each step
    clash = lowest_after[written + 1] - np.arange(len(written))  # the lowest start that clashes, per byte
    clash = clash[lowest_after[written + 1] < far]
    return int(clash.min()) - 1 if clash.size else None


@pytest.mark.host
@pytest.mark.parametrize("name", ["convs", "depthwise", "pools_pads", "series", "shape_arithmetic", "columns",
                                  "convs_int4", "columns_int4"])
def test_each_kernels_order_of_writes_keeps_to_the_overlap_lowering_plans(zoo, tmp_path, name):
    """The kernels' real order of work against the one lowering plans by, layer by layer: each
    convolution, depthwise and pooling layer of the zoo runs alone with its output stores
    recorded (TD_STORE). From that order and the layer's windows comes the highest start of the
    output, relative to its input, at and below which no store lands on input bytes a later
    output still reads; lowering's overlap (segment_overlap, by WorkOrder) must not exceed it.
    Then the layer runs with its output exactly where the planner may put it, traced and as
    built for the board, and must give the outputs it gives in separate buffers. A pair's
    windows are gathered only where lowering gave the layer scratch, and within it. A pointwise
    layer does the same in reverse, with its output as low as the planner may put it above its
    input (reverse_overlap): no store may land on an input byte a later output still reads."""
    lowered = cengine.lower(zoo[name])
    traced, plain = _layer_runner(lowered, tmp_path / "traced", True), _layer_runner(lowered, tmp_path / "plain", False)
    tensors, rng = lowered.model.tensors, np.random.default_rng(11)
    checked = above_checked = 0
    for run, call in _windowed_runs(lowered):
        in_bytes, out_bytes = tensors[call.inputs[0]].nbytes, tensors[call.output].nbytes
        shapes = " -> ".join("x".join(map(str, tensors[t].shape)) for t in (call.inputs[0], call.output))
        where = f"{name} {run} ({call.kernel}, {shapes})"
        x = rng.integers(-128, 128, in_bytes, dtype=np.int8)
        arena = np.concatenate([x, np.zeros(out_bytes, np.int8)])
        scratch = np.full(call.scratch + 64, 0x5A, np.int8)
        log = np.zeros(out_bytes + 1, np.int32)
        traced.trace_start(ctypes.c_void_p(arena.ctypes.data + in_bytes), ctypes.c_void_p(log.ctypes.data), len(log))
        _run_layer(traced, run, arena, 0, in_bytes, scratch)
        assert traced.trace_count() == out_bytes, where
        assert np.array_equal(np.sort(log[:out_bytes]), np.arange(out_bytes)), f"{where}: a byte written twice"
        assert (scratch[call.scratch:] == 0x5A).all(), f"{where}: gathers beyond its {call.scratch} bytes of scratch"
        separate = arena[in_bytes:].copy()
        written = np.empty(out_bytes, np.int64)
        written[log[:out_bytes]] = np.arange(out_bytes)
        needed = _last_needed(call, written)
        if call.above is not None:  # from above: output byte k lands on input byte k + start
            start = -(-call.above // memplan.ALIGN) * memplan.ALIGN  # as low as the planner may put it
            landed = np.arange(out_bytes) + start
            inside = landed < in_bytes
            late = needed[landed[inside]] > written[inside]
            assert not late.any(), f"{where}: output byte {int(np.nonzero(late)[0][0])} overwrites an input still read"
            above_checked += 1
        elif call.overlap is None:  # planned apart from its input (a small depthwise layer)
            continue
        else:
            bound = _kernel_bound(needed, written)
            assert bound is None or call.overlap <= bound, f"{where}: planned {call.overlap}, the kernel allows {bound}"
            start = call.overlap // memplan.ALIGN * memplan.ALIGN  # as high as the planner may put it
        input_at = max(0, -start)
        for lib in (traced, plain):
            arena = np.zeros(input_at + max(in_bytes, start + out_bytes), np.int8)
            arena[input_at:input_at + in_bytes] = x
            if lib is traced:
                traced.trace_start(ctypes.c_void_p(arena.ctypes.data + input_at + start),
                                   ctypes.c_void_p(log.ctypes.data), len(log))
            _run_layer(lib, run, arena, input_at, input_at + start, scratch)
            got = arena[input_at + start:input_at + start + out_bytes]
            assert np.array_equal(got, separate), f"{where}: other outputs starting {start} bytes past its input"
        checked += 1
    assert checked, f"no layer of {name} is planned to overlap its input"
    if name in ("convs", "columns"):  # pointwise layers: odd pixel counts, channels 4 + rest
        assert above_checked, f"no pointwise layer of {name} ran in reverse"


@pytest.fixture(scope="module")
def order_probe(tmp_path_factory):
    """The kernels' inside_range() and window_inside() callable from Python."""
    folder = tmp_path_factory.mktemp("probe")
    (folder / "probe.c").write_text("""#include <string.h>
#include "td_kernels_inline.h"
void probe_inside_range(int32_t pad, int32_t stride, int32_t span, int32_t size, int32_t out, int32_t *range) {
  inside_range(pad, stride, span, size, out, &range[0], &range[1]);
}
/* in_h, in_w, out_h, out_w, k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left */
int probe_gathers(const int32_t *g) {
  td_conv p;
  int32_t oy, ox;
  memset(&p, 0, sizeof p);
  p.in_h = g[0]; p.in_w = g[1]; p.out_h = g[2]; p.out_w = g[3]; p.k_h = g[4]; p.k_w = g[5];
  p.stride_h = g[6]; p.stride_w = g[7]; p.dil_h = g[8]; p.dil_w = g[9]; p.pad_top = g[10]; p.pad_left = g[11];
  for (oy = 0; oy < p.out_h; ++oy)
    for (ox = 0; ox < p.out_w; ++ox)
      if (!window_inside(&p, oy, ox)) return 1;
  return 0;
}
""")
    library = folder / "probe.so"
    subprocess.run(["gcc", *FLAGS, "-shared", "-fPIC", "-I", str(shipped("firmware")), "-o", str(library),
                    str(folder / "probe.c")], check=True)
    return ctypes.CDLL(str(library))


@pytest.mark.host
def test_lowering_finds_the_windows_inside_the_input_as_the_kernels_do(order_probe):
    """inside_range(), which rows and columns the depthwise kernel's border columns span, on
    both sides; and the convolution's scratch, which lowering gives a layer exactly where the
    kernel gathers some window (dilated columns too, where it reads none in place)."""
    from tinydeploy.codegen.cengine.lowering import conv_gathers, inside_range
    got = (ctypes.c_int32 * 2)()
    for pad, stride, span, size, out in np.ndindex(5, 4, 10, 13, 13):
        if stride and size and out:
            order_probe.probe_inside_range(pad, stride, span, size, out, got)
            assert tuple(got) == inside_range(pad, stride, span, size, out), (pad, stride, span, size, out)
    shapes = 0
    for in_h, in_w, k, stride, dilation, same in np.ndindex(7, 7, 4, 3, 3, 2):
        if not (in_h and in_w and k and stride and dilation):
            continue
        (out_h, pad_top), (out_w, pad_left) = ((_same_padding(n, k, stride, dilation) if same else
                                                ((n - (k - 1) * dilation - 1) // stride + 1, 0)) for n in (in_h, in_w))
        if out_h < 1 or out_w < 1:
            continue
        for k_w, dil_w in ((k, dilation), (1, dilation)):  # a 1 x k_w window may still be dilated
            geometry = (in_h, in_w, out_h, out_w, k, k_w, stride, stride, dilation, dil_w, pad_top, pad_left)
            expected = bool(order_probe.probe_gathers((ctypes.c_int32 * 12)(*geometry)))
            assert conv_gathers(*geometry) == expected, geometry
            shapes += 1
    assert shapes > 500


@pytest.mark.host
def test_the_generated_c_stops_on_kernels_of_another_order_of_work(zoo, tmp_path, monkeypatch):
    """td_model.c checks td_kernels.h's numbers against the WorkOrder the arena was planned by:
    it compiles as generated, and not where lowering's table says otherwise, naming both."""
    import dataclasses
    from tinydeploy.codegen.cengine import source
    from tinydeploy.codegen.cengine.lowering import WORK_ORDER
    lowered = cengine.lower(zoo["depthwise"])

    def compile_model(folder: Path) -> subprocess.CompletedProcess:
        folder.mkdir()
        for name, text in cengine.render_sources(lowered, "checks").items():
            (folder / name).write_text(text)
        return subprocess.run(["gcc", *FLAGS, "-fsyntax-only", str(folder / "td_model.c")], capture_output=True,
                              text=True)

    assert compile_model(tmp_path / "same").returncode == 0
    checks = WORK_ORDER.c_checks()
    assert {macro for _, macro, _ in checks} == {"TD_QUAD", "TD_PAIR", "TD_CHANNEL_GROUP", "TD_SMALL_SIDE"}
    for field, macro, value in checks:
        monkeypatch.setattr(source, "WORK_ORDER", dataclasses.replace(WORK_ORDER, **{field: value * 2}))
        done = compile_model(tmp_path / field)
        assert done.returncode != 0 and f"{macro} is not tinydeploy's WorkOrder.{field} = {value * 2}" in done.stderr


# ---- rendering ---------------------------------------------------------------

def pio_config(project):
    done = subprocess.run([sys.executable, "-m", "platformio", "project", "config", "-d", str(project),
                           "--json-output"], capture_output=True, text=True, timeout=120, check=True)
    return {env: dict(options) for env, options in json.loads(done.stdout)}


@pytest.mark.host
def test_esp32_project_with_the_c_engine_has_no_tflm(int8_cnn, tmp_path):
    from tinydeploy.toolchain.project import write_project
    board = get_board("esp32-c3-devkitm-1")
    model = load_model(int8_cnn)
    files = render(model, board, None, RenderOptions(engine="c"))
    write_project(files, tmp_path)
    env = pio_config(tmp_path)[f"env:{board.name}"]
    assert env["platform"] == "espressif32" and env["framework"] == ["espidf"]
    assert "src/idf_component.yml" not in files  # no esp-tflite-micro dependency
    assert not any("tflite" in text.lower() and "micro_interpreter" in text.lower() for text in files.values())
    sources = re.search(r'SRCS((?: "[^"]+")+)', files["src/CMakeLists.txt"]).group(1).split()
    assert sorted(s.strip('"') for s in sources) == ["hal_espidf.c", "td_board.c", "td_c_runner.c", "td_kernels.c",
                                                    "td_main.c", "td_model.c", "td_protocol.c"]
    info = json.loads(json.loads(re.search(r"kInfoFormat\[\] = (\".*\");", files["src/td_board.c"]).group(1))
                      % ("1", "null"))
    assert info["engine"] == "c" and info["timer"] == "us" and "tflm" not in info
    # The portable part of that firmware compiles with the host compiler, warnings as errors.
    src = tmp_path / "src"
    subprocess.run(["gcc", *FLAGS, "-c", "-I", str(src), str(src / "td_model.c"), str(src / "td_kernels.c"),
                    str(src / "td_main.c"), str(src / "td_protocol.c"), str(src / "td_board.c")], check=True, cwd=tmp_path)


@pytest.mark.host
def test_tflm_is_refused_on_the_emulated_board(int8_cnn):
    with pytest.raises(BadInput, match="qemu-riscv32 runs the c engine only; render with --engine c"):
        render(load_model(int8_cnn), get_board("qemu-riscv32"), None, RenderOptions(engine="tflm"))


# ---- the emulated RISC-V board: the real firmware, end to end ------------------



@pytest.fixture(scope="module")
def built_rv32(int8_cnn, tmp_path_factory, rv32_tools):
    project = tmp_path_factory.mktemp("rv32") / "fw"
    done = run_cli("render", str(int8_cnn), "--board", "qemu-riscv32", "--out", str(project), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    done = run_cli("build", str(project), "--json")
    assert done.returncode == 0, done.stderr
    return project, summary, json.loads(done.stdout)


@pytest.mark.host
def test_the_emulated_boards_startup_gives_errno_its_thread_local_home(rv32_tools, tmp_path):
    """start_rv32.S points tp at the TLS block qemu_virt.ld lays out (.tdata, .tbss, before
    .bss): picolibc's errno is written there, initial values hold and .bss does not overlap."""
    import select
    board, firmware = get_board("qemu-riscv32"), Path(shipped("firmware"))
    tools = board.toolchain
    elf = tmp_path / "probe.elf"
    subprocess.run([tools["cc"], *tools["cflags"], *tools["ldflags"], "-T", str(firmware / tools["linker_script"]),
                    f"-I{firmware}", str(Path(__file__).with_name("rv32_tls_probe.c")),
                    *(str(firmware / name) for name in tools["sources"]), "-o", str(elf)], check=True)
    qemu = subprocess.Popen([*board.emulator["command"], "-serial", "stdio", "-kernel", str(elf)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:  # a write through an unset tp traps, and the probe then says nothing
        line = qemu.stdout.readline().decode() if select.select([qemu.stdout], [], [], 20)[0] else "(silent)"
    finally:
        qemu.kill()
        qemu.wait()
    assert line.split() == ["errno", "34", "ERANGE", "34", "inside", "1", "initialised", "8", "cleared", "0",
                            "max", "1", "bss-after-tls", "1"]


@pytest.mark.host
def test_rv32_firmware_builds_and_reports_its_sizes(built_rv32):
    project, summary, build = built_rv32
    assert summary["engine"] == "c" and summary["arena_bytes"] <= summary["tflm_arena_bytes"]
    assert summary["arena_bytes"] <= 1.05 * summary["lower_bound_bytes"]
    elf = project / "build" / "firmware.elf"
    assert build["firmware"] == [str(elf)]
    header = elf.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and header[4] == 1 and int.from_bytes(header[18:20], "little") == 243  # RISC-V
    assert build["size"]["text"] > summary["constant_bytes"] and build["size"]["bss"] >= summary["arena_bytes"]


@pytest.mark.host
def test_rv32_render_bench_validate_verify(built_rv32, int8_cnn, tmp_path):
    """The real firmware on QEMU: bench with validation on digits, then verify gates on it."""
    from tinydeploy.device import emulate
    project, summary, _ = built_rv32
    with emulate.start(project) as emulator:
        done = run_cli("bench", "--port", emulator.url, "--out", str(tmp_path / "bench"), "--runs", "5",
                   "--expect-model", str(int8_cnn), "--validate", "40", "--data", "digits", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    device = results["device"]
    assert device["engine"] == "c" and device["timer"] == "instructions" and device["board"] == "qemu-riscv32"
    assert results["arena_used_bytes"] == summary["arena_bytes"]
    counts = results["latency_instructions"]
    assert counts["min"] == counts["max"] > 0  # exact and repeatable under -icount
    assert results["latency_us"]["basis"].startswith("estimate")
    assert results["latency_us"]["median"] == round(counts["median"] / 160, 3)
    validation = results["validation"]
    assert validation["samples"] == 40 and validation["top1_agreement"] == 1.0
    assert validation["identical_outputs"] == 1.0 and validation["max_output_diff_lsb"] == 0
    assert "TFLite reference kernels" in validation["reference"]
    ok = run_cli("verify", str(tmp_path / "bench"), "--json", "--max-latency-ms", "1000")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    verdicts = {v["target"]: v for v in json.loads(ok.stdout)["verdicts"]}
    assert verdicts["arena"]["measured"] == round(summary["arena_bytes"] / 1024, 2)
    assert verdicts["latency"]["basis"].startswith("median, estimate")
    tight = run_cli("verify", str(tmp_path / "bench"), "--json", "--max-latency-ms", "0.001")
    assert tight.returncode == 1


@pytest.mark.host
def test_bench_profile_times_every_layer_and_calibrate_learns_the_boards_costs(built_rv32, int8_cnn, tmp_path):
    """bench --profile on the real firmware: one time per operator, summing to the whole inference;
    calibrate fits the board's costs on it, writes a profile that reads back, and its estimates
    are closer to what was measured."""
    from tinydeploy.device import emulate
    from tinydeploy.core.boards import load_boards
    from tinydeploy.costs.counts import layer_costs
    project, _, _ = built_rv32
    with emulate.start(project) as emulator:
        done = run_cli("bench", "--port", emulator.url, "--out", str(tmp_path / "bench"), "--runs", "3",
                       "--expect-model", str(int8_cnn), "--profile", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    layers = results["profile"]["layers"]
    ops = layer_costs(load_model(int8_cnn))
    assert [layer["op"] for layer in layers] == [op.op for op in ops]
    assert all(layer["ticks"] > 0 for layer in layers if layer["macs"])
    total = sum(layer["ticks"] for layer in layers)  # the input and output copies are outside the layers
    assert 0.9 * results["latency_instructions"]["median"] < total <= results["latency_instructions"]["median"]
    page = (tmp_path / "bench" / "bench.html").read_text()
    assert page.count("<svg") == 1 and page.count("<rect") >= 2 * len(layers)  # measured and estimate bars
    done = run_cli("calibrate", str(tmp_path / "bench"), "--board", "qemu-riscv32", "--out", str(tmp_path / "cal"),
                   "--json")
    assert done.returncode == 0, done.stderr
    calibration = json.loads(done.stdout)
    assert calibration["fitted"]["CONV_2D"]["how"].startswith("non-negative least squares")  # several sizes here
    assert set(calibration["fitted"]) | set(calibration["uncalibrated"]) == {op.op for op in ops}
    once = [op.op for op in ops if sum(o.op == op.op for o in ops) == 1]
    assert all(calibration["fitted"][op]["how"].startswith("proportional: one size") for op in once)
    assert calibration["error_after"]["median_layer_error"] < calibration["error_before"]["median_layer_error"]
    assert calibration["error_after"]["max_layer_error"] < calibration["error_before"]["max_layer_error"]
    # The shipped kernel table (costs/data/cengine_kernels.json) was measured on this emulated board,
    # so the whole network's estimate is already within a fraction of a percent (0.22% when written,
    # its layer errors cancelling); the fit may not make it worse than 1%.
    assert calibration["error_after"]["median_network_error"] <= max(
        calibration["error_before"]["median_network_error"], 0.01)
    board = load_boards((tmp_path / "cal",))["qemu-riscv32"]
    assert board.kernels_for("c") == "calibrated" and board.calibrated_engine == "c" and board.shadows
    assert "tinydeploy calibrate" in board.latency_source
    conv = next(op for op in ops if op.op == "CONV_2D")
    fit = calibration["fitted"]["CONV_2D"]
    outputs = int(np.prod(conv.output_shape))
    assert board.estimate_us("CONV_2D", conv.work, "calibrated", outputs) == pytest.approx(
        (fit["per_unit"] * conv.work + fit["per_output"] * outputs + fit["fixed"]) / 160)
    # optimize and search cost the C engine with it, and say so
    from tinydeploy.optimize.engine_choice import cost_all
    from tinydeploy.core.targets import Targets
    (c_cost,) = cost_all(load_model(int8_cnn), board, Targets())
    assert f"calibrated on this board's profiled c runs ({tmp_path / 'cal' / 'qemu-riscv32.toml'})" in c_cost.latency_basis
    done = run_cli("calibrate", str(tmp_path / "bench"), "--board", "esp32dev", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "measured on board 'qemu-riscv32', not esp32dev" in done.stderr


@pytest.mark.host
def test_two_emulator_runs_count_the_same_instructions(built_rv32, tmp_path):
    from tinydeploy.device import bench, emulate
    project, _, _ = built_rv32
    medians = []
    for i in range(2):
        with emulate.start(project) as emulator:
            result = bench.bench(emulator.url, tmp_path / f"run{i}", runs=3, warmup=1, reset=False)
        medians.append(result.latency_instructions)
    assert medians[0]["min"] == medians[0]["max"] == medians[1]["min"] == medians[1]["max"]


@pytest.mark.host
def test_build_names_the_packages_when_the_cross_compiler_is_missing(built_rv32, tmp_path):
    from tinydeploy.toolchain.build import build
    project, _, _ = built_rv32
    env_path = os.environ["PATH"]
    (tmp_path / "make").symlink_to(shutil.which("make"))
    try:
        os.environ["PATH"] = str(tmp_path)  # make, but no cross compiler
        with pytest.raises(StepFailed, match="apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"):
            build(project)
    finally:
        os.environ["PATH"] = env_path


@pytest.mark.host
def test_emulate_needs_a_built_project_for_an_emulated_board(built_rv32, tmp_path, int8_cnn):
    from tinydeploy.device import emulate
    with pytest.raises(BadInput, match="not a rendered project"):
        emulate.start(tmp_path)
    esp = tmp_path / "esp"
    assert run_cli("render", str(int8_cnn), "--board", "esp32-s3-devkitc-1", "--out", str(esp)).returncode == 0
    with pytest.raises(BadInput, match="real board"):
        emulate.start(esp)
    done = run_cli("emulate", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "tinydeploy.json" in done.stderr
    done = run_cli("flash", str(built_rv32[0]), "--port", "loop://")
    assert done.returncode == 2 and "tinydeploy emulate" in done.stderr
    assert Path(built_rv32[0] / "tinydeploy.json").is_file()


@pytest.mark.host
def test_emulate_command_prints_the_port_and_stops_qemu_on_sigterm(built_rv32, tmp_path):
    import signal
    import socket
    import time
    project, _, _ = built_rv32
    port_file = tmp_path / "port.txt"
    process = subprocess.Popen([sys.executable, "-m", "tinydeploy", "emulate", str(project), "--port-file",
                                str(port_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not port_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    url = port_file.read_text().strip()
    assert url.startswith("socket://127.0.0.1:")
    host, port = url[len("socket://"):].split(":")
    socket.create_connection((host, int(port)), timeout=5).close()  # QEMU's UART is listening
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    assert process.returncode == 0 and url in out
    with pytest.raises(OSError):
        socket.create_connection((host, int(port)), timeout=2)


@pytest.mark.host
@pytest.mark.parametrize("name", ["convs", "depthwise", "columns"])
def test_every_kernel_variant_the_cost_model_may_pick_is_bit_exact(zoo, tmp_path, monkeypatch, name):
    """Lowering asks the kernel cost model (costs.kernels.choose_variant) which variant a layer
    runs; whichever it answers, the outputs are TFLite's. The first legal variant is the kernels'
    old way (the other tests); forced here, every layer's last: the depthwise kernel's four-pixel
    or unrolled runs at any depth multiplier, the convolution's border windows read in place
    without scratch."""
    pick = "last"
    from tinydeploy.codegen.cengine import lowering
    from tinydeploy.runtime.evaluate import reference_outputs
    monkeypatch.setattr(lowering, "choose_variant", lambda op, shape, legal, rows=None: legal[0 if pick == "first" else -1])
    model = zoo[name]
    lowered = cengine.lower(model)
    variants = {c.variant for c in lowered.members if c.variant}
    assert variants, "no layer with a choice"
    if pick == "last":
        assert variants & {"direct", "small", "quads"}
        assert all(c.scratch == 0 for c in lowered.members if c.variant == "direct")
    host = cengine.HostModel(lowered, tmp_path, flags=tuple(FLAGS))
    x = np.random.default_rng(11).integers(-128, 128, size=(40, *model.input_tensors[0].shape[1:]), dtype=np.int8)
    expected = reference_outputs(model, x).reshape(len(x), -1)
    got = host.predict(x).reshape(len(x), -1)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} outputs differ"


@pytest.mark.host
@pytest.mark.parametrize("seed", [41, 42, 43])
def test_random_models_are_bit_exact_with_the_variants_and_plan_chosen(tmp_path, seed):
    """Small seeded random CNNs (tests.models.random_cnn; bench/cengine_unseen.py uses seeds from
    34000) lowered as the cost model chooses: outputs are TFLite's, SOFTMAX shares its input's
    buffer, MEAN's output starts no later than its input, and no layer's gather scratch is
    planned where the convolution reads its borders in place."""
    from tests import models
    from tinydeploy.runtime.evaluate import reference_outputs
    model = parse_model(models.random_cnn(seed), f"random{seed}")
    lowered = cengine.lower(model)
    by_op = {c.op.name: c for c in lowered.calls}
    plan = lowered.plan
    assert plan.shares(by_op["SOFTMAX"].inputs[0], by_op["SOFTMAX"].output)
    assert by_op["MEAN"].overlap == 0
    assert plan.offsets[by_op["MEAN"].output] <= plan.offsets[by_op["MEAN"].inputs[0]] or \
        plan.offsets[by_op["MEAN"].output] >= plan.offsets[by_op["MEAN"].inputs[0]] + \
        model.tensors[by_op["MEAN"].inputs[0]].nbytes
    assert all(c.scratch == 0 for c in lowered.members if c.variant == "direct")
    host = cengine.HostModel(lowered, tmp_path, flags=tuple(FLAGS))
    x = np.random.default_rng(seed).integers(-128, 128, size=(40, *model.input_tensors[0].shape[1:]), dtype=np.int8)
    expected = reference_outputs(model, x).reshape(len(x), -1)
    got = host.predict(x).reshape(len(x), -1)
    assert np.array_equal(got, expected), f"{int((got != expected).sum())} outputs differ"
