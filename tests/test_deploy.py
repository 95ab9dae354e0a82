import json

import pytest

from tinydeploy.runtime import tflm
from tinydeploy.runtime.evaluate import evaluate
from tinydeploy.core.model import load_model
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


def deploy_digits(out, board: str, max_latency_ms: str):
    """`tinydeploy deploy` on small digits with the fast budget and the first two stages (the
    stages themselves are tested in test_optimize), as JSON."""
    return run_cli("deploy", "--data", "digits", "--image-size", "16", "--budget", "fast", "--stages", "arch,qat",
                   "--board", board, "--out", out, "--json", "--max-latency-ms", max_latency_ms, timeout=900)


def test_deploy_without_a_board_uses_the_virtual_device(tmp_path):
    done = deploy_digits(tmp_path, "esp32-s3-devkitc-1", "5")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["virtual"] is True
    assert any("no board attached: build and flash skipped" in n for n in report["notices"])
    model_path = tmp_path / "optimize" / "model.tflite"
    model = load_model(model_path)
    bench = report["bench"]
    # The figures in the JSON are TFLM's, checked independently here.
    assert bench["model_sha256"] == model.sha256 and bench["model_bytes"] == model.size_bytes
    assert bench["arena_used_bytes"] == tflm.measure_arena(model).arena_bytes
    assert bench["latency_us"]["basis"].startswith("virtual")
    assert bench["validation"]["top1_agreement"] == 1.0 and bench["validation"]["samples"] == 50
    latency = next(v for v in report["verdicts"] if v["target"] == "latency")
    assert latency["basis"] == "estimate for the board (no board attached)"
    assert latency["measured"] == round(report["optimize"]["chosen"]["latency_ms"], 3)
    assert (tmp_path / "firmware" / "platformio.ini").is_file()
    assert (tmp_path / "bench" / "serial.log").is_file()
    assert done.returncode == (0 if report["met"] else 1)
    from tinydeploy.core import data
    ds = data.load("digits", image_size=16)
    device_accuracy = bench["validation"]["device_accuracy"]
    assert abs(device_accuracy - evaluate(model, ds.x_val[:50], ds.y_val[:50]).accuracy) < 1e-9


def test_deploy_on_the_emulated_board_runs_the_real_firmware(tmp_path):
    done = deploy_digits(tmp_path, "qemu-riscv32", "50")
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["virtual"] is False and report["project"]["engine"] == "c"
    assert (tmp_path / "firmware" / "build" / "firmware.elf").is_file()
    bench = report["bench"]
    model = load_model(tmp_path / "optimize" / "model.tflite")
    assert bench["model_sha256"] == model.sha256 and bench["device"]["timer"] == "instructions"
    assert bench["arena_used_bytes"] == report["project"]["arena_bytes"]
    counts = bench["latency_instructions"]
    assert counts["min"] == counts["max"]
    assert bench["validation"]["identical_outputs"] == 1.0 and bench["validation"]["samples"] == 50
    latency = next(v for v in report["verdicts"] if v["target"] == "latency")
    assert latency["basis"].startswith("median, estimate") and latency["measured"] == round(counts["median"] / 160 / 1000, 3)
    assert done.returncode == (0 if report["met"] else 1)
