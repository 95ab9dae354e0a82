"""calibrate's fit and profile writing, on synthetic layers (the real loop runs on the emulated
board in tests/test_cengine.py)."""

import json

import pytest

from tinydeploy.core.boards import get_board
from tinydeploy.device.calibrate import _fit, calibrate, calibrated_board, to_toml
from tinydeploy.core.errors import BadInput

pytestmark = pytest.mark.unit


def layer(op, work, outputs, cycles, macs=True):
    return {"op": op, "work": work, "macs": work if macs else 0, "outputs": outputs, "cycles": cycles}


def test_a_mac_op_is_fitted_on_its_macs_its_outputs_and_a_fixed_cost():
    points = [layer("CONV_2D", w, o, 5.5 * w + 12 * o + 300) for w, o in ((1000, 50), (4000, 64), (9000, 300))]
    per_unit, per_output, fixed, how = _fit(points)
    assert (per_unit, per_output, fixed) == pytest.approx((5.5, 12, 300))
    assert how == "non-negative least squares on work, outputs, a fixed cost"


def test_no_coefficient_is_negative_and_one_size_is_only_proportional():
    falling = [layer("ADD", w, 0, c, macs=False) for w, c in ((10, 1000), (20, 900), (30, 950))]
    per_unit, _, fixed, _ = _fit(falling)
    assert per_unit > 0 and fixed >= 0
    assert _fit([layer("SOFTMAX", 10, 0, 4000, macs=False)] * 2)[3].startswith("proportional: one size")
    assert _fit([layer("MEAN", 0, 0, 500, macs=False)]) == "no layer of a size to fit on"


def test_the_calibrated_profile_is_toml_that_reads_back(tmp_path):
    board = get_board("esp32dev")
    fitted = calibrated_board(board, {"CONV_2D": (2.5, 9.0, 120.0, "test")}, "a test", "tflm")
    text = to_toml({"name": "x-y", "latency": {"source": "line 1\nline \"2\"", "cycles_per_op": fitted.cycles_per_op},
                    "list": [1, 2.5, "a"], "flag": True})
    import tomllib
    assert tomllib.loads(text)["latency"]["cycles_per_op"]["calibrated"]["CONV_2D"] == 120.0
    assert tomllib.loads(text)["latency"]["source"] == "line 1\nline \"2\""
    assert fitted.estimate_us("CONV_2D", 1000, "calibrated", 10) == pytest.approx((2500 + 90 + 120) / 240)
    assert fitted.estimate_us("DEPTHWISE_CONV_2D", 1000, "calibrated") == board.estimate_us("DEPTHWISE_CONV_2D", 1000)


def test_a_calibration_serves_only_the_engine_whose_runs_made_it():
    board = get_board("esp32dev")
    on_c = calibrated_board(board, {"CONV_2D": (9.0, 0.0, 0.0, "test")}, "a test", "c")
    assert on_c.kernels_for("c") == "calibrated" and on_c.kernels_for("tflm") == board.kernels == "esp-nn"
    assert on_c.estimate_basis("tflm") == "esp-nn cycles per MAC"
    assert on_c.estimate_basis("c").startswith("calibrated on this board's profiled c runs")


def test_runs_without_a_profile_or_from_another_board_are_refused(tmp_path):
    (tmp_path / "plain.json").write_text(json.dumps({"device": {"board": "esp32dev"}, "profile": None}))
    with pytest.raises(BadInput, match="no per-layer profile; run `tinydeploy bench --profile"):
        calibrate([tmp_path / "plain.json"], get_board("esp32dev"), tmp_path / "out")
    (tmp_path / "other.json").write_text(json.dumps({"device": {"board": "esp32dev"},
                                                     "profile": {"layers": [{"op": "ADD", "ticks": 1}]}}))
    with pytest.raises(BadInput, match="measured on board 'esp32dev', not esp32-s3-devkitc-1"):
        calibrate([tmp_path / "other.json"], get_board("esp32-s3-devkitc-1"), tmp_path / "out")
    for name, engine in (("tflm.json", "tflm"), ("c.json", "c")):
        (tmp_path / name).write_text(json.dumps({"device": {"board": "esp32dev", "engine": engine}, "profile": {
            "layers": [{"op": "ADD", "ticks": 1, "work": 10, "macs": 0}]}}))
    with pytest.raises(BadInput, match=r"different engines \(c, tflm\); .* calibrate one engine at a time"):
        calibrate([tmp_path / "tflm.json", tmp_path / "c.json"], get_board("esp32dev"), tmp_path / "out")
    with pytest.raises(BadInput, match="no such results file"):
        calibrate([tmp_path / "missing.json"], get_board("esp32dev"), tmp_path / "out")
