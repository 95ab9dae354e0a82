import json
import os

import pytest

from tinydeploy.costs import counts, liveness
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import get_board
from tinydeploy.cli import main
from tinydeploy.runtime.inspect import inspect
from tinydeploy.core.model import load_model
from tests.helpers import run_cli

pytestmark = pytest.mark.host




def test_measured_arena_is_the_smallest_that_works(int8_cnn):
    model = load_model(int8_cnn)
    arena = tflm.measure_arena(model)
    prober = tflm.TflmProcess(model.data)  # a fresh interpreter in a child process for each size
    try:
        assert prober.accepts(arena.arena_bytes)
        assert not prober.accepts(arena.arena_bytes - 16)
        assert not prober.accepts(arena.arena_bytes - 1)
    finally:
        prober.close()
    assert arena.head_bytes + arena.tail_bytes == arena.arena_bytes
    assert liveness.activation_lower_bound(model) <= arena.head_bytes


def test_mac_count_of_a_known_conv_layer(int8_cnn):
    layers = counts.layer_costs(load_model(int8_cnn))
    first = layers[0]
    assert first.op == "CONV_2D" and first.output_shape == (1, 30, 30, 8)
    assert first.macs == 30 * 30 * 8 * (3 * 3 * 1)  # outputs x kernel window x input channels
    depthwise = next(layer for layer in layers if layer.op == "DEPTHWISE_CONV_2D")
    assert depthwise.macs == 13 * 13 * 8 * (3 * 3)


def test_lower_bound_counts_live_tensors(int8_cnn):
    model = load_model(int8_cnn)
    # At the first conv, its int8 input (32*32*1) and output (30*30*8) are both live.
    assert liveness.activation_lower_bound(model) >= 32 * 32 + 30 * 30 * 8


def test_report_json(int8_cnn, capsys):
    assert main(["inspect", str(int8_cnn), "--json", "--board", "esp32dev", "--max-latency-ms", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["flash_bytes"] == int8_cnn.stat().st_size
    assert report["int8"] is True
    assert {op["op"] for op in report["operators"]} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert all(op["tflm_supported"] for op in report["operators"])
    assert report["inputs"][0]["shape"] == [1, 32, 32, 1] and report["inputs"][0]["dtype"] == "int8"
    assert report["macs"] == sum(layer["macs"] for layer in report["layers"])
    assert report["arena"]["arena_bytes"] > report["activation_lower_bound_bytes"]
    assert report["latency"]["basis"] == "estimate, esp-nn cycles per MAC" and report["latency"]["board"] == "esp32dev"
    assert [t["target"] for t in report["targets"]] == ["arena", "model", "latency"]


def test_inspect_reports_energy_per_inference_and_average_power_at_the_rate(int8_cnn, capsys):
    assert main(["inspect", str(int8_cnn), "--json", "--rate-hz", "0.5", "--max-power-mw", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    energy, latency = report["energy"], report["latency"]
    board = get_board("esp32-s3-devkitc-1")
    assert energy["available"] and energy["board"] == board.name and energy["rate_hz"] == 0.5
    assert energy["energy_uj"] == pytest.approx(board.power.supply_v * board.power.active_ma * latency["ms"], rel=1e-3)
    assert energy["energy_basis"].startswith("estimate (") and energy["power_basis"].startswith("estimate (")
    modes = {m["mode"]: m["average_mw"] for m in energy["detail"]["rates"][0]["modes"]}
    assert energy["mode"] == min(modes, key=modes.get) == "light" and energy["average_mw"] == modes["light"]
    assert energy["budget_mw"] == 2 and energy["max_rate_hz"] > 0.5 and energy["max_rate_mode"] == "light"
    assert report["targets"][-1]["target"] == "power" and report["targets"][-1]["met"]
    assert report["targets"][-1]["note"] == "average at 0.5 Hz, light sleep between inferences"


def test_inspect_states_1_hz_and_1_mw_by_default_and_shows_energy_as_estimates(int8_cnn):
    code, out, err = run_cli("inspect", int8_cnn, env={**os.environ, "COLUMNS": "200"})
    assert code == 0, err
    assert "Energy on esp32-s3-devkitc-1 — ESTIMATES" in out and "energy per inference" in out
    assert "average at 1 Hz, light sleep (least)" in out and "highest rate within 1 mW" in out


def test_a_missed_power_target_exits_1_and_says_the_highest_rate_that_meets_it(int8_cnn):
    code, out, err = run_cli("inspect", int8_cnn, "--max-power-mw", "1", "--rate-hz", "10")
    assert code == 1
    assert "targets missed: power" in err and "average at 10 Hz, light sleep between inferences" in err
    assert "the highest rate within 1 mW is 0." in err and "Hz (light sleep)" in err


def test_energy_on_a_board_without_a_power_profile_is_unavailable_not_a_crash(int8_cnn):
    code, out, err = run_cli("inspect", int8_cnn, "--board", "qemu-riscv32", "--max-latency-ms", "100", "--json")
    assert code == 0, err  # not asked: shown, not judged
    energy = json.loads(out)["energy"]
    assert not energy["available"] and energy["energy_uj"] is None
    assert energy["reason"].startswith("estimate unavailable: board qemu-riscv32 has no power profile")
    code, out, err = run_cli("inspect", int8_cnn, "--board", "qemu-riscv32", "--max-latency-ms", "100",
                             "--max-energy-uj", "1000")
    assert code == 1 and "Traceback" not in err
    assert "targets missed: energy: estimate unavailable: board qemu-riscv32 has no power profile" in err


@pytest.mark.parametrize("rate", ["0", "-1", "nan", "inf"])
def test_a_rate_that_is_not_positive_and_finite_exits_2(int8_cnn, rate, capsys):
    assert main(["inspect", str(int8_cnn), f"--rate-hz={rate}"]) == 2
    assert "argument --rate-hz:" in capsys.readouterr().err


def test_latency_estimate_uses_the_board(int8_cnn):
    slow = inspect(int8_cnn, get_board("esp32dev"))
    fast = inspect(int8_cnn, get_board("esp32-s3-devkitc-1"))
    assert 0 < fast.latency_ms < slow.latency_ms


def test_a_missed_target_exits_1(int8_cnn):
    code, out, err = run_cli("inspect", int8_cnn, "--max-arena-kb", "1")
    assert code == 1
    assert "MISSED" in out
    assert "targets missed: arena" in err


def test_float_model_is_reported_with_its_figures(float_cnn):
    code, out, err = run_cli("inspect", float_cnn, "--json")
    assert code == 2
    report = json.loads(out)
    assert report["int8"] is False
    assert report["flash_bytes"] > 0 and report["arena"]["arena_bytes"] > 0 and report["macs"] > 0
    assert "not deployable as int8" in err
    assert "Traceback" not in err


def test_unsupported_ops_are_listed_at_once(unsupported_ops_model):
    code, out, err = run_cli("inspect", unsupported_ops_model)
    assert code == 2
    assert "ops TFLM does not support: REDUCE_PROD, TOPK_V2." in err
    assert "Traceback" not in err
    assert "not measurable" in out


@pytest.mark.parametrize("content, expected", [
    (None, "no such file"),
    (b"", "the file is empty"),
    (b"\x89HDF\r\n\x1a\n" + bytes(200), "Keras HDF5"),
    (bytes(range(256)) * 8, "not a TFLite flatbuffer"),
])
def test_bad_files_give_one_line_and_exit_2(tmp_path, content, expected):
    path = tmp_path / "model.tflite"
    if content is not None:
        path.write_bytes(content)
    code, out, err = run_cli("inspect", path)
    assert code == 2
    assert expected in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_truncated_model_exits_2(int8_cnn, tmp_path):
    path = tmp_path / "truncated.tflite"
    path.write_bytes(int8_cnn.read_bytes()[: int8_cnn.stat().st_size // 3])
    code, out, err = run_cli("inspect", path)
    assert code == 2
    assert "truncated or corrupt" in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_board_exits_2(int8_cnn):
    code, out, err = run_cli("inspect", int8_cnn, "--board", "arduino-uno")
    assert code == 2
    assert "unknown board 'arduino-uno'. Known boards:" in err and "esp32dev" in err


def test_debug_shows_the_traceback(tmp_path):
    code, out, err = run_cli("inspect", tmp_path / "missing.tflite", "--debug")
    assert code == 2  # --debug adds the traceback; the exit code is still bad input's
    assert "Traceback" in err and "BadInput" in err


def test_json_errors_are_one_json_document(tmp_path):
    code, out, err = run_cli("inspect", tmp_path / "missing.tflite", "--json")
    assert code == 2
    assert json.loads(out) == {"error": f"{tmp_path / 'missing.tflite'}: no such file", "exit_code": 2}
