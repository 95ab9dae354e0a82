"""Row fusion (tinydeploy.codegen.cengine.lowering.row_schedule): a chain of windowed layers run
band by band, each layer's output held only while a window spans it. Its schedule is replayed
here row by row, and its overlap byte by byte; the C it becomes is checked bit-exact against
TFLite in test_cengine.py, on the zoo's fused layers."""

from __future__ import annotations

import numpy as np
import pytest

from tinydeploy.codegen import cengine
from tinydeploy.codegen.cengine.lowering import INPUT, OUTPUT, Rows, row_schedule

def _chain(rng) -> list[Rows]:
    """2 to 4 windowed layers, each reading the one before: random strides, windows, paddings."""
    rows, height, row_bytes = [], int(rng.integers(1, 41)), int(rng.integers(1, 25))
    for _ in range(int(rng.integers(2, 5))):
        span = int(rng.integers(1, min(7, height) + 1))  # a window no taller than the image
        stride = int(rng.integers(1, 3))
        pad, bottom = int(rng.integers(0, span)), int(rng.integers(0, span))
        out = (height + pad + bottom - span) // stride + 1
        out_bytes = int(rng.integers(1, 25))
        rows.append(Rows(height, out, stride, pad, span, row_bytes, out_bytes, ("in_h", "out_h", "pad_top")))
        height, row_bytes = out, out_bytes
    return rows


def _replay(rows: list[Rows], n: int) -> None:
    """Run the schedule on labels: every band must read exactly the rows its window needs, at the
    places it reads them, compute each row once, and write the last layer's every row; and with
    the output starting `overlap` bytes past the input, no output byte may land on an input byte
    a later band still reads."""
    scheduled = row_schedule(rows, n)
    if scheduled is None:
        return
    steps, sizes, overlap = scheduled
    assert overlap <= 0
    buffers = [[None] * (size // r.out_row) for size, r in zip(sizes, rows)]
    made = [set() for _ in rows]
    output = [None] * rows[-1].out_h
    reads, writes = [], []  # (step, first byte, end byte) of the input read, the output written
    for t, step in enumerate(steps):
        if step.part is None:  # a move to the buffer's start
            r = rows[step.target]
            assert step.source_offset % r.out_row == 0 and step.size % r.out_row == 0
            first, count = step.source_offset // r.out_row, step.size // r.out_row
            buffers[step.target][:count] = buffers[step.target][first:first + count]
            continue
        j, layer = step.part, rows[step.part]
        shape = dict(step.shape)
        in_count, out_count, pad = shape["in_h"], shape["out_h"], shape["pad_top"]
        if step.source == INPUT:
            assert j == 0 and step.source_offset % layer.in_row == 0
            in_lo = step.source_offset // layer.in_row
            labels = [("x", in_lo + i) for i in range(in_count)]
            assert in_lo + in_count <= layer.in_h
            reads.append((t, step.source_offset, step.source_offset + in_count * layer.in_row))
        else:
            assert step.source == j - 1 and step.source_offset == 0
            labels = buffers[j - 1][:in_count]
            assert None not in labels, f"step {t}: layer {j} reads buffer rows not yet computed"
            in_lo = labels[0][1]
            assert labels == [(j - 1, in_lo + i) for i in range(in_count)], f"step {t}: rows out of place"
        assert (in_lo - pad + layer.pad) % layer.stride == 0
        first = (in_lo - pad + layer.pad) // layer.stride
        expected, expected_lo, expected_count = layer.band(first, first + out_count)
        assert (dict(expected), expected_lo, expected_count) == (shape, in_lo, in_count), f"step {t}: another band"
        for k in range(out_count):
            assert (first + k) not in made[j], f"layer {j} row {first + k} computed twice"
            made[j].add(first + k)
        if step.target == OUTPUT:
            assert j == len(rows) - 1 and step.target_offset == first * layer.out_row
            output[first:first + out_count] = [(j, first + k) for k in range(out_count)]
            writes.append((t, step.target_offset, step.target_offset + out_count * layer.out_row))
        else:
            assert step.target == j and step.target_offset % layer.out_row == 0
            slot = step.target_offset // layer.out_row
            assert slot + out_count <= len(buffers[j]), f"layer {j}: its row buffer overflows"
            buffers[j][slot:slot + out_count] = [(j, first + k) for k in range(out_count)]
    assert output == [(len(rows) - 1, r) for r in range(rows[-1].out_h)]
    for t, lo, hi in writes:  # the output's bytes [lo, hi) sit at input bytes [overlap + lo, overlap + hi)
        later = [start for when, start, _ in reads if when > t]
        assert not later or overlap + hi <= min(later), f"a write at step {t} lands on input read later"


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(40))
def test_a_row_schedule_computes_every_row_once_from_the_rows_its_windows_need(seed):
    rows = _chain(np.random.default_rng(seed))
    for n in (1, 2, 3, 4, 8):
        _replay(rows, n)


@pytest.mark.unit
def test_a_row_schedule_holds_no_more_than_the_rows_a_window_spans():
    """3x3 stride-1 convolutions on 32 rows: one output row a band keeps three rows of the
    middle layer, not 32; band k writes output row k after its last read of input row k, so
    the output may start where the input does (in place)."""
    a = Rows(32, 32, 1, 1, 3, 64, 128, ("in_h", "out_h", "pad_top"))
    b = Rows(32, 32, 1, 1, 3, 128, 64, ("in_h", "out_h", "pad_top"))
    steps, sizes, overlap = row_schedule([a, b], 1)
    assert sizes == [3 * 128]
    assert sum(dict(s.shape)["out_h"] for s in steps if s.part == 0) == 32  # every middle row once
    assert overlap == 0
    _replay([a, b], 1)


@pytest.mark.unit
def test_a_band_whose_window_reads_no_row_is_refused():
    """A window wholly in the padding has no band of its own: the chain is not fused."""
    a = Rows(4, 4, 1, 0, 1, 8, 8, ("in_h", "out_h", "pad_top"))
    b = Rows(4, 6, 1, 3, 2, 8, 8, ("in_h", "out_h", "pad_top"))  # row 0's window: rows -3 and -2
    assert row_schedule([a, b], 1) is None


def _fused_everywhere(model, rows: int):
    """The model lowered with every chain row fusion may join fused, as long as it goes
    (whatever the arena), each band `rows` output rows of its chain's last layer (4 more where
    that is a series, whose bands hold four pixels or more)."""
    from tinydeploy.codegen.cengine.lowering import Lowered, _joinable, fuse_rows, plan_memory
    lowered = cengine.lower(model)
    calls = [member for call in lowered.calls for member in call.members]
    skipped: set[tuple[int, int]] = set()
    while True:
        joins = [(i, j) for i, j in _joinable(model, calls) if (calls[i].op.index, calls[j].op.index) not in skipped]
        if not joins:
            break
        i, j = joins[0]
        parts = [m for call in calls[i:j + 1] for m in call.members]
        fused = fuse_rows(parts, rows) or fuse_rows(parts, rows + 4)  # a series: four pixels a band or more
        if fused is None:
            skipped.add((calls[i].op.index, calls[j].op.index))
            continue
        calls = calls[:i] + [fused] + calls[j + 1:]
    return Lowered(model, calls, plan_memory(model, calls), lowered.input, lowered.output, lowered.lower_bound)


@pytest.fixture(scope="module")
def chains():
    """The test zoo's windowed models and two more (a convolution pooled, an inverted bottleneck
    average-pooled; a series convolved then max-pooled down its rows through a view)."""
    from tests import models
    from tinydeploy.core.model import parse_model
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf
    zoo = {name: parse_model(data, name) for name, data in models.kernel_zoo().items()
           if name in ("convs", "depthwise", "pools_pads", "series", "columns", "columns_int4")}
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)

    def bottleneck(x):  # 20x20x1
        a = layers.MaxPooling2D(2)(layers.Conv2D(16, 3, padding="same", activation="relu")(x))
        a = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu6")(
            layers.Conv2D(12, 1, activation="relu")(a))
        a = layers.AveragePooling2D(2)(layers.Conv2D(8, 1)(a))
        return layers.Dense(4)(layers.GlobalAveragePooling2D()(a))

    def series_pooled(x):  # 64 steps of 3 channels
        a = layers.Conv1D(6, 3, strides=2)(layers.Conv1D(16, 5, padding="same", activation="relu")(x))
        return layers.Dense(3)(layers.Flatten()(layers.MaxPooling1D(2)(a)))

    for name, shape, body in (("bottleneck", (20, 20, 1), bottleneck), ("series_pooled", (64, 3), series_pooled)):
        inputs = layers.Input(shape)
        model = keras.Model(inputs, body(inputs))
        for layer in model.layers:
            weights = layer.get_weights()
            if weights:
                layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in weights])
        zoo[name] = parse_model(to_int8_tflite(model, rng.normal(0, 1, (64, *shape)).astype(np.float32)), name)
    return zoo


@pytest.mark.host
def test_every_chain_row_fused_gives_tflites_outputs(chains, tmp_path):
    """Each model with every chain fused as far as it goes, in bands of one or of three rows
    (a last band shorter than the others; a series, five or seven), the plan placing each fused output as far into its
    input as its overlap allows: compiled with -Werror and run, the outputs are TFLite's.
    Between them the chains run over rows and over columns, through views (one turning a
    series' columns into rows), three layers and more long, with a gathering convolution and
    both poolings inside."""
    from tinydeploy.runtime.evaluate import reference_outputs
    fused_parts = []
    for i, (name, model) in enumerate(chains.items()):
        rows = (1, 3)[i % 2]  # the models in turn (one build each keeps the test short)
        lowered = _fused_everywhere(model, rows)
        fused = [c for c in lowered.calls if c.parts]
        assert fused, f"{name}: nothing row-fused"
        fused_parts += fused
        host = cengine.HostModel(lowered, tmp_path / name,
                                 flags=("-std=c99", "-pedantic", "-O2", "-Wall", "-Wextra", "-Werror"))
        x = np.random.default_rng(i).integers(-128, 128, size=(30, *model.input_tensors[0].shape[1:]), dtype=np.int8)
        expected = reference_outputs(model, x).reshape(len(x), -1)
        got = host.predict(x).reshape(len(x), -1)
        assert np.array_equal(got, expected), f"{name}, {rows} rows a band: {int((got != expected).sum())} differ"
    assert {c.fusion.rows for c in fused_parts} >= {1, 3}
    axes = {field for c in fused_parts for step in c.fusion.schedule for field, _ in step.shape}
    assert {"in_h", "in_w"} <= axes
    kernels = {p.kernel for c in fused_parts for p in c.parts}
    assert {"td_conv_2d", "td_depthwise_conv_2d", "td_max_pool_2d", "td_average_pool_2d", "td_copy"} <= kernels
    assert max(sum(not p.view for p in c.parts) for c in fused_parts) >= 3
    assert any(p.scratch for c in fused_parts for p in c.parts)
