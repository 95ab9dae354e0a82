"""The rendered firmware's real sources, built on this computer and benched over a pty
(bench/firmware_host_check.py). TFLM projects need TFLM sources, which CI cannot fetch:
those tests run when TINYDEPLOY_TFLM_SRC (an esp-tflite-micro tree), TINYDEPLOY_ESP_NN_SRC
(an esp-nn tree) and TINYDEPLOY_ARDUINO_TFLM_SRC (Chirale_TensorFlowLite) are set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinydeploy.core.boards import get_board
from tinydeploy.core.model import load_model
from tinydeploy.toolchain.project import create_project
from tinydeploy.codegen.render import RenderOptions
from tests.helpers import missing, need_programs

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[1]
ESP_IDF_BOARDS = ("esp32dev", "esp32-c3-devkitm-1", "esp32-s3-devkitc-1")


def source(variable: str, what: str) -> Path:
    value = os.environ.get(variable)
    if not value:
        pytest.skip(f"{variable} is not set: give {what} to build the real firmware on the host")
    return Path(value)


def host_check(project: Path, model: Path, work: Path, *extra: str, validate: int = 100) -> dict:
    need_programs("gcc", "g++", packages="gcc-multilib g++-multilib")
    if subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", "/dev/null"], input=b"int main(void){return 0;}",
                      capture_output=True).returncode:
        missing("needs a 32-bit host compiler (Debian: apt-get install gcc-multilib g++-multilib)")
    done = subprocess.run([sys.executable, str(ROOT / "bench/firmware_host_check.py"), str(project), "--model",
                           str(model), "--validate", str(validate), "--work", str(work), "--json", *extra],
                          capture_output=True, text=True, timeout=1800)
    assert done.stdout, done.stderr
    return json.loads(done.stdout)


def assert_profiled(results: dict, model_path: Path) -> None:
    """layers% timed each operator of the model, in order, with the firmware's µs clock (TFLM's
    profiler hook), and the layers add up to about one whole inference."""
    ops = [op.name for op in load_model(model_path).operators]
    profile = results["profile"]
    assert profile["timer"] == "us" and [layer["op"] for layer in profile["layers"]] == ops
    assert all(layer["ticks"] >= 0 for layer in profile["layers"]) and profile["total_ticks"] > 0
    assert profile["total_ticks"] <= 3 * results["latency_us"]["max"] + 100


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    # TFLM's objects are cached across runs when a folder is given (they take minutes to compile).
    return Path(os.environ.get("TINYDEPLOY_HOST_CHECK_WORK") or tmp_path_factory.mktemp("host-check"))


def test_c_engine_esp_idf_project_runs_on_the_host(int8_cnn, tmp_path, work):
    """hal_espidf.c and the rest of the C engine's ESP-IDF project, compiled 32-bit with warnings
    as errors against the ESP-IDF stand-ins, boot and validate bit-exactly."""
    create_project(int8_cnn, get_board("esp32-c3-devkitm-1"), tmp_path / "c", RenderOptions(engine="c"))
    outcome = host_check(tmp_path / "c", int8_cnn, work, validate=60)
    assert outcome["exit_code"] == 0, outcome["stderr"]
    validation = outcome["results"]["validation"]
    assert validation["samples"] == 60 and validation["identical_outputs"] == 1.0
    assert outcome["results"]["device"]["engine"] == "c"


@pytest.mark.parametrize("board_name", ESP_IDF_BOARDS)
def test_esp_idf_firmware_boots_and_validates_with_no_margin(int8_cnn, tmp_path, work, board_name):
    """With no margin at all, the arena tinydeploy sizes for the board's kernel library is enough:
    ESP-NN's scratch on the S3, 32-bit structs everywhere; no sample is lost."""
    tflm_src = source("TINYDEPLOY_TFLM_SRC", "an espressif/esp-tflite-micro tree")
    board = get_board(board_name)
    extra = ["--tflm", str(tflm_src)]
    if board.tflm_kernels("espidf") != "reference":
        extra += ["--esp-nn", str(source("TINYDEPLOY_ESP_NN_SRC", "an espressif/esp-nn tree"))]
    summary = create_project(int8_cnn, board, tmp_path / "p", RenderOptions(arena_margin_percent=0))
    outcome = host_check(tmp_path / "p", int8_cnn, work, *extra, "--profile")
    assert outcome["exit_code"] == 0, outcome["stderr"]
    results = outcome["results"]
    assert_profiled(results, int8_cnn)
    assert results["device"]["kernels"] == board.tflm_kernels("espidf") == outcome["kernels"]
    used = results["arena_used_bytes"]
    assert used <= summary["arena_bytes"] <= used * 1.10  # enough, and not much more than needed
    assert results["validation"]["samples"] == 100 and results["validation"]["top1_agreement"] == 1.0
    assert outcome["rx_dropped_bytes"] == 0


def test_a_boot_failure_shows_tflms_own_words(int8_cnn, tmp_path, work):
    """An arena sized for ESP-NN's generic kernels, run with the S3's scratch requests: setup
    fails at boot, and bench says so with the firmware's own lines, not a later command's error."""
    tflm_src = source("TINYDEPLOY_TFLM_SRC", "an espressif/esp-tflite-micro tree")
    esp_nn = source("TINYDEPLOY_ESP_NN_SRC", "an espressif/esp-nn tree")
    create_project(int8_cnn, get_board("esp32dev"), tmp_path / "p", RenderOptions(arena_margin_percent=0))
    outcome = host_check(tmp_path / "p", int8_cnn, work, "--tflm", str(tflm_src), "--esp-nn", str(esp_nn),
                         "--kernels", "esp-nn-s3", validate=0)
    assert outcome["exit_code"] == 1
    assert "could not set up the model: arena allocation failed" in outcome["stderr"]
    assert "Failed to resize buffer. Requested:" in outcome["stderr"]
    assert outcome["results"]["arena_used_bytes"] is None  # no partial arena reported as used


def test_arduino_firmware_boots_with_no_margin_and_agrees_on_every_sample(int8_cnn_per_tensor_dense, tmp_path, work):
    """Chirale_TensorFlowLite's kernels are CMSIS-NN's: the arena tinydeploy sizes for them (their
    convolutions' im2col scratch) is enough with no margin at all (sized for TFLM's reference
    kernels, the firmware crashed in tensor allocation), and a model whose dense layer is quantized
    per tensor, which the library's FULLY_CONNECTED computes exactly, agrees with the host on every
    sample (a per-channel one agreed on 93%; render refuses it)."""
    library = source("TINYDEPLOY_ARDUINO_TFLM_SRC", "a Chirale_TensorFlowLite tree")
    model = int8_cnn_per_tensor_dense
    board = get_board("esp32dev")
    summary = create_project(model, board, tmp_path / "a", RenderOptions(framework="arduino", arena_margin_percent=0))
    outcome = host_check(tmp_path / "a", model, work, "--arduino-lib", str(library), "--profile")
    assert outcome["exit_code"] == 0, outcome["stderr"]
    results = outcome["results"]
    assert_profiled(results, model)
    used = results["arena_used_bytes"]
    assert used <= summary["arena_bytes"] <= used * 1.10
    validation = results["validation"]
    assert validation["samples"] == 100 and validation["kernels"] == board.tflm_kernels("arduino") == "cmsis-nn"
    assert validation["top1_agreement"] == 1.0
    counts = validation["output_diff_lsb_counts"]
    assert sum(counts.values()) == 100 * 10 and max(int(k) for k in counts) == validation["max_output_diff_lsb"]
    assert outcome["rx_dropped_bytes"] == 0  # the 4 KB receive buffer held every streamed sample
