import os

import pytest

from tinydeploy.toolchain import build as build_module
from tinydeploy.core.boards import get_board
from tinydeploy.toolchain.build import build
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.toolchain.flash import choose_port, flash_firmware
from tests.helpers import free_port, mock_esp32_bootloader

pytestmark = pytest.mark.host


@pytest.fixture
def mock_bootloader():
    """esp32-mock-bootloader: a mock ESP32-S3 ROM bootloader on a loopback TCP port that esptool talks to."""
    with mock_esp32_bootloader() as url:
        yield url


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "firmware.bin"
    path.write_bytes(b"\xe9" + os.urandom(8191))  # an ESP image's magic byte, then anything
    return path


def test_flash_a_prebuilt_image(mock_bootloader, image):
    log = flash_firmware(image, "esp32s3", mock_bootloader)
    assert "Hash of data verified" in log.read_text()


def test_flash_with_the_wrong_chip_names_the_right_chip_and_board(mock_bootloader, image):
    with pytest.raises(StepFailed, match="wrong chip: the board is ESP32-S3, not ESP32; pass --chip esp32s3 "
                                         r"\(or --board esp32-s3-devkitc-1\)"):
        flash_firmware(image, "esp32", mock_bootloader)
    # A board profile gives esptool its chip name.
    log = flash_firmware(image, port=mock_bootloader, board=get_board("esp32-s3-devkitc-1"))
    assert "Hash of data verified" in log.read_text()


def test_a_project_flashed_to_the_wrong_chip_is_told_which_board_to_render_for(tmp_path):
    from tinydeploy.toolchain.flash import explain_upload_failure
    lines = ["Connecting....", "A fatal error occurred: This chip is ESP32-C3, not ESP32. Wrong --chip argument?"]
    message = explain_upload_failure(lines, 2, "/dev/ttyACM0", tmp_path / "flash.log")
    assert message.startswith("wrong chip: the board is ESP32-C3, not ESP32; render the project for a board "
                              "with that chip: --board esp32-c3-devkitm-1")
    assert "--chip" not in message  # `flash DIR` has no --chip


def test_cli_flash_firmware_by_board(image, capsys):
    from tinydeploy.cli import main
    assert main(["flash", "--firmware", str(image), "--board", "qemu-riscv32", "--port", "socket://127.0.0.1:1"]) == 2
    assert "board qemu-riscv32 is not flashed with esptool" in capsys.readouterr().err
    assert main(["flash", "--firmware", str(image), "--port", "socket://127.0.0.1:1"]) == 2
    assert "--firmware needs --chip (e.g. esp32s3) or --board" in capsys.readouterr().err


def test_flash_to_a_port_that_does_not_exist(image):
    with pytest.raises(StepFailed, match="port /dev/ttyTINYDEPLOY0 was not found"):
        flash_firmware(image, "esp32s3", "/dev/ttyTINYDEPLOY0")
    closed = f"socket://127.0.0.1:{free_port()}"
    with pytest.raises(StepFailed, match=f"port {closed} was not found"):
        flash_firmware(image, "esp32s3", closed)


def test_flash_input_errors(image, tmp_path):
    with pytest.raises(BadInput, match="unknown chip 'esp8266x'. Chips: esp32, esp32s2"):
        flash_firmware(image, "esp8266x", "socket://127.0.0.1:1")
    with pytest.raises(BadInput, match="no such firmware image"):
        flash_firmware(tmp_path / "none.bin", "esp32s3", "socket://127.0.0.1:1")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(BadInput, match="empty.bin: the firmware image is empty"):
        flash_firmware(tmp_path / "empty.bin", "esp32s3", "socket://127.0.0.1:1")
    (tmp_path / "notes.bin").write_text("not firmware\n")
    with pytest.raises(BadInput, match=r"not an ESP32 firmware image \(it starts with byte 0x6e"):
        flash_firmware(tmp_path / "notes.bin", "esp32s3", "socket://127.0.0.1:1")


def _attached(monkeypatch, *boards):
    """pyserial's port list as if these (device, vid, pid) were plugged in, whatever this machine has."""
    from serial.tools import list_ports, list_ports_common
    ports = []
    for device, vid, pid in boards:
        port = list_ports_common.ListPortInfo(device, skip_link_detection=True)
        port.vid, port.pid = vid, pid
        ports.append(port)
    monkeypatch.setattr(list_ports, "comports", lambda *a, **k: ports)


def test_ports_are_found_by_usb_ids_and_the_same_condition_fails_the_same_way(monkeypatch):
    from tinydeploy.toolchain.flash import attached_port
    _attached(monkeypatch)
    with pytest.raises(StepFailed, match="no ESP32 board found on USB"):
        choose_port(None)
    assert attached_port() is None  # deploy then benches the virtual device
    assert choose_port("/dev/ttyUSB7") == "/dev/ttyUSB7"
    _attached(monkeypatch, ("/dev/ttyACM0", 0x303A, 0x1001), ("/dev/ttyS0", None, None), ("/dev/ttyUSB3", 0x046D, 0xC52B))
    assert choose_port(None) == attached_port() == "/dev/ttyACM0"
    _attached(monkeypatch, ("/dev/ttyACM0", 0x303A, 0x1001), ("/dev/ttyUSB0", 0x10C4, 0xEA60))
    for find in (lambda: choose_port(None), attached_port):  # flash and deploy: both bad input, exit 2
        with pytest.raises(BadInput, match=r"several ESP32 boards are attached: /dev/ttyACM0 \(Espressif USB "
                                           r"JTAG/serial.*/dev/ttyUSB0 \(Silicon Labs CP210x.*pass --port"):
            find()


def test_build_needs_a_project(tmp_path):
    with pytest.raises(BadInput, match="not a rendered project .no platformio.ini or Makefile."):
        build(tmp_path)


def test_build_offline_is_explained(tmp_path):
    """PlatformIO's real failure when it cannot download the platform: its proxy is a closed loopback port."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.c").write_text("void app_main(void) {}\n")
    (tmp_path / "platformio.ini").write_text(
        "[env:esp32dev]\nplatform = espressif32\nboard = esp32dev\nframework = espidf\n")
    closed = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, HTTPS_PROXY=closed, HTTP_PROXY=closed, https_proxy=closed, http_proxy=closed,
               PLATFORMIO_CORE_DIR=str(tmp_path / "core"))
    with pytest.raises(StepFailed, match="could not download the ESP32 platform or toolchain: this machine seems "
                                         "to be offline.*pio pkg install"):
        build(tmp_path, process_env=env)
    assert "Installing espressif32" in (tmp_path / "build.log").read_text()


def test_platformio_missing_is_explained(monkeypatch):
    monkeypatch.setattr(build_module.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(build_module.shutil, "which", lambda name: None)
    with pytest.raises(StepFailed, match="PlatformIO is not installed: `pip install platformio`"):
        build_module.pio_command()
