"""Kernel libraries' scratch requests (tinydeploy.costs.kernels) against the libraries' own figures."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.costs.kernels import LIBRARIES, EspNnS3, Window

ROOT = Path(__file__).resolve().parents[1]


def conv(in_hw, in_ch, k, out_hw, out_ch, stride=1, pad=0):
    return Window(in_w=in_hw, in_h=in_hw, in_ch=in_ch, filter_w=k, filter_h=k, out_w=out_hw, out_h=out_hw,
                  out_ch=out_ch, stride_w=stride, stride_h=stride, pad_w=pad, pad_h=pad)


@pytest.mark.unit
def test_s3_scratch_matches_the_published_digits_cnn():
    # REFERENCE.md: ESP-NN's S3 requests for a 5-conv digits CNN, read from a host build of esp-nn 1.2.3.
    s3 = EspNnS3()
    assert s3.conv_scratch(conv(32, 1, 3, 32, 8, pad=1), depthwise=False) == 3944
    assert s3.conv_scratch(conv(16, 8, 3, 16, 8, pad=1), depthwise=True) == 4272
    assert s3.conv_scratch(conv(16, 8, 1, 16, 16), depthwise=False) == 320
    assert s3.conv_scratch(conv(8, 16, 3, 8, 16, pad=1), depthwise=True) == 1760
    assert s3.conv_scratch(conv(8, 16, 1, 8, 32), depthwise=False) == 832


@pytest.mark.unit
def test_generic_esp_nn_asks_only_for_softmax_scratch():
    generic = LIBRARIES["esp-nn"]
    assert generic.conv_scratch(conv(32, 1, 3, 32, 8, pad=1), depthwise=False) == 0
    assert generic.softmax_scratch(10) == 40
    assert set(LIBRARIES) == {"reference", "esp-nn", "esp-nn-s3", "cmsis-nn"}


@pytest.mark.host
def test_cmsis_nn_asks_for_im2col_scratch_except_on_its_1x1_fast_path(int8_cnn):
    """Chirale_TensorFlowLite's CMSIS-NN in portable C: arm_convolve_s8_get_buffer_size is two
    int16 columns (4 * in_ch * kernel area bytes); a 1x1 convolution of stride 1 asks for none,
    nor do depthwise, dense or pooling layers."""
    from tinydeploy.core.model import load_model
    model = load_model(int8_cnn)
    cmsis, reference = LIBRARIES["cmsis-nn"], LIBRARIES["reference"]
    asked = {}
    for op in model.operators:
        extra = cmsis.scratch(model, op)[len(reference.scratch(model, op)):]
        asked[op.index] = extra
        if op.name != "CONV_2D":
            assert extra == []
    convs = [op for op in model.operators if op.name == "CONV_2D"]
    first, pointwise = convs[0], convs[1]
    in_ch = model.tensors[first.inputs[0]].shape[3]
    kh, kw = model.tensors[first.inputs[1]].shape[1:3]
    assert asked[first.index] == [("CMSIS-NN im2col", 4 * in_ch * kh * kw)]
    assert model.tensors[pointwise.inputs[1]].shape[1:3] == (1, 1) and asked[pointwise.index] == []


def _random_windows(n: int, seed: int = 0) -> list[Window]:
    """Shapes that reach every branch: pointwise, im2col, padded, tiled, odd channel counts, multipliers."""
    rng = np.random.default_rng(seed)
    windows = []
    for _ in range(n):
        k = int(rng.choice([1, 3, 5, 3, 2]))
        stride = int(rng.choice([1, 1, 2]))
        in_hw = int(rng.integers(max(k, 2), 72))
        in_ch = int(rng.choice([1, 3, 4, 6, 8, 12, 16, 24, 32, 40, 64]))
        pad = int(rng.integers(0, k // 2 + 1)) if rng.random() < 0.6 else 0
        out_hw = (in_hw + 2 * pad - k) // stride + 1
        mult = int(rng.choice([1, 1, 1, 2, 4, 8]))
        windows.append(Window(in_w=in_hw, in_h=in_hw, in_ch=in_ch, filter_w=k, filter_h=k, out_w=out_hw, out_h=out_hw,
                              out_ch=int(rng.choice([4, 8, 10, 16, 32])), stride_w=stride, stride_h=stride,
                              pad_w=pad, pad_h=pad, ch_mult=mult))
    return windows


@pytest.mark.host
def test_s3_scratch_equals_esp_nns_own_functions(tmp_path):
    source = os.environ.get("TINYDEPLOY_ESP_NN_SRC")
    if not source:
        pytest.skip("TINYDEPLOY_ESP_NN_SRC is not set: give an espressif/esp-nn source tree to compare with "
                    "its own S3 scratch-size functions")
    esp_nn = Path(source)
    exe = tmp_path / "sizes"
    subprocess.run(["gcc", "-O1", "-w", "-ffunction-sections", "-Wl,--gc-sections",
                    f"-I{esp_nn / 'include'}", f"-I{esp_nn / 'src/common'}", str(ROOT / "tests/esp_nn_sizes.c"),
                    str(esp_nn / "src/convolution/esp_nn_conv_esp32s3.c"),
                    str(esp_nn / "src/convolution/esp_nn_depthwise_conv_s8_esp32s3.c"), "-o", str(exe)],
                   check=True)
    windows = _random_windows(600)
    lines = []
    for w in windows:
        for kind in ("conv", "dw"):
            lines.append(f"{kind} {w.in_w} {w.in_h} {w.in_ch} {w.filter_w} {w.filter_h} {w.out_w} {w.out_h} "
                         f"{w.in_ch * w.ch_mult if kind == 'dw' else w.out_ch} {w.stride_w} {w.stride_h} "
                         f"{w.pad_w} {w.pad_h} {w.ch_mult if kind == 'dw' else 1}")
    done = subprocess.run([str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, check=True)
    theirs = [int(v) for v in done.stdout.split()]
    s3 = EspNnS3()
    ours = []
    for w in windows:
        ours.append(s3.conv_scratch(Window(**{**w.__dict__, "ch_mult": 1}), depthwise=False))
        ours.append(s3.conv_scratch(Window(**{**w.__dict__, "out_ch": w.in_ch * w.ch_mult}), depthwise=True))
    assert len(theirs) == len(ours)
    mismatches = [(line, t, o) for line, t, o in zip(lines, theirs, ours) if t != o]
    assert not mismatches, mismatches[:5]


@pytest.mark.unit
def test_the_c_engines_kernel_cost_model_picks_the_cheapest_measured_variant():
    from tinydeploy.costs.kernels import SHAPE_FEATURES, KernelShape, choose_variant, predicted_per_mac
    near = KernelShape(out_h=16, out_w=16, channels=8, multiplier=2, k_h=3, k_w=3, stride=1, padded=1)
    far = KernelShape(out_h=2, out_w=1, channels=24, multiplier=3, k_h=5, k_w=1, stride=2, padded=0)

    def row(variant, shape, per_mac):
        return {"op": "DEPTHWISE_CONV_2D", "variant": variant, **{n: getattr(shape, n) for n in SHAPE_FEATURES},
                "macs": 1000, "instructions": int(per_mac * 1000)}

    rows = [row("channels", near, 9.0), row("quads", near, 4.5), row("channels", far, 15.0), row("quads", far, 15.0),
            row("small", far, 9.0)]
    legal = ["channels", "quads", "small"]
    assert choose_variant("DEPTHWISE_CONV_2D", near, legal, rows) == "quads"  # 4.5 < small's nearest, 9.0
    assert choose_variant("DEPTHWISE_CONV_2D", far, legal, rows) == "small"  # 9.0 < 15
    assert choose_variant("DEPTHWISE_CONV_2D", far, ["channels", "quads"], rows) == "channels"  # a tie: the first
    assert predicted_per_mac("DEPTHWISE_CONV_2D", "quads", near, rows) == 4.5
    # nothing measured for the op: the first legal variant, the kernels' old way
    assert choose_variant("CONV_2D", near, ["gather", "direct"], rows) == "gather"
    # memory first where the instructions are as good as equal: no scratch within 5%
    conv = [dict(row("gather", near, 4.0), op="CONV_2D"), dict(row("direct", near, 4.1), op="CONV_2D")]
    assert choose_variant("CONV_2D", near, ["gather", "direct"], conv) == "direct"
    conv[1]["instructions"] = 4400
    assert choose_variant("CONV_2D", near, ["gather", "direct"], conv) == "gather"


@pytest.mark.unit
def test_the_shipped_kernel_cost_table_says_how_it_was_measured():
    from tinydeploy.costs.kernels import SHAPE_FEATURES, kernel_table
    table = kernel_table()
    assert "kernel_grid.py" in table["method"] and "QEMU" in table["method"]
    ops = {row["op"] for row in table["rows"]}
    assert ops == {"CONV_2D", "DEPTHWISE_CONV_2D"}
    for row in table["rows"]:
        assert set(SHAPE_FEATURES) <= set(row) and row["instructions"] > row["macs"] > 0
