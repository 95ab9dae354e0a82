"""`tinydeploy flash`: upload a project with PlatformIO, or a prebuilt image with esptool.

Without --port, the board is found in pyserial's port list by the USB IDs of
ESP32 boards and their USB-UART bridges.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Callable

from tinydeploy.core.boards import ESPTOOL_CHIPS, Board, load_boards
from tinydeploy.core.bounds import check
from tinydeploy.toolchain.build import pio_command, run_logged
from tinydeploy.core.errors import BadInput, StepFailed

# USB vendor:product IDs of ESP32 boards' serial interfaces (from the vendors' USB ID registrations).
ESP_USB_IDS = {
    (0x303A, 0x1001): "Espressif USB JTAG/serial (ESP32-S3/C3/C6 built-in)",
    (0x303A, 0x0002): "Espressif USB CDC (ESP32-S2/S3)",
    (0x10C4, 0xEA60): "Silicon Labs CP210x USB-UART bridge",
    (0x1A86, 0x7523): "WCH CH340 USB-UART bridge",
    (0x1A86, 0x55D4): "WCH CH9102 USB-UART bridge",
    (0x1A86, 0x55D3): "WCH CH343 USB-UART bridge",
    (0x0403, 0x6001): "FTDI FT232 USB-UART bridge",
    (0x0403, 0x6010): "FTDI FT2232 (ESP-Prog)",
}


def detect_ports() -> list[tuple[str, str]]:
    """Serial ports that look like ESP32 boards: [(device, what it is)]."""
    from serial.tools import list_ports
    found = []
    for port in list_ports.comports():
        kind = ESP_USB_IDS.get((port.vid, port.pid)) if port.vid is not None else None
        if kind:
            found.append((port.device, kind))
    return found


def attached_port() -> str | None:
    """The port of the one ESP32 board attached, or None when there is none.

    Raises:
        BadInput: several boards are attached (which one is meant needs --port).
    """
    found = detect_ports()
    if len(found) > 1:
        raise BadInput("several ESP32 boards are attached: " + ", ".join(f"{d} ({k})" for d, k in found)
                       + "; pass --port")
    return found[0][0] if found else None


def choose_port(port: str | None) -> str:
    """The given port, or the one ESP32 board attached.

    Raises:
        StepFailed: no board found.
        BadInput: several boards attached and no --port.
    """
    port = port or attached_port()
    if port is None:
        raise StepFailed("no ESP32 board found on USB: connect one (a data cable, not a charge-only one) "
                         "or pass --port")
    return port


def _wrong_chip_hint(found: str, remedy: str) -> str:
    """What to do when the board's chip is `found` (as esptool prints it, e.g. ESP32-S3): the
    board profiles with that chip, in the remedy's form ("--board {}" or "--chip {}")."""
    chip = found.lower().replace("-", "")
    names = [b.name for b in load_boards().values() if b.esptool_chip == chip]
    if remedy == "chip":
        return f"pass --chip {chip}" + (f" (or --board {names[0]})" if names else "")
    if names:
        return f"render the project for a board with that chip: --board {' or --board '.join(names)}"
    return f"no board profile has the chip {chip}: add one (tinydeploy boards lists them)"


def explain_upload_failure(lines: list[str], code: int, port: str, log_path: Path, remedy: str = "board") -> str:
    """One message, with a hint, for a failed upload. remedy: how this command picks the chip,
    "board" (a project rendered for a board) or "chip" (--chip/--board with --firmware)."""
    text = "\n".join(lines)
    if re.search(r"Wrong (--)?chip argument|This chip is ([\w-]+), not", text):
        match = re.search(r"This chip is ([\w-]+), not ([\w-]+)", text)
        if match:
            return (f"wrong chip: the board is {match.group(1)}, not {match.group(2)}; "
                    f"{_wrong_chip_hint(match.group(1), remedy)}. Log: {log_path}")
        return f"wrong chip: the attached board's chip differs from the one flashed for. Log: {log_path}"
    if re.search(r"Resource busy|port is busy|Permission denied|being used by another", text) and \
            not re.search(r"No such file|Connection refused|could not open port .*doesn't exist", text, re.IGNORECASE):
        return (f"port {port} is busy: close serial monitors (pio device monitor, screen, an IDE) using it, "
                f"or check you may access it (dialout group). Log: {log_path}")
    if re.search(r"No such file or directory|Connection refused|doesn't exist|could not open port", text,
                 re.IGNORECASE):
        return (f"port {port} was not found: check the cable and the port name "
                f"(`python -m serial.tools.list_ports -v`). Log: {log_path}")
    if re.search(r"Failed to connect|No serial data received|Invalid head of packet|Timed out waiting", text):
        return (f"the board on {port} did not answer the bootloader: hold BOOT, press and release RESET, "
                f"release BOOT, and try again (or lower the upload speed). Log: {log_path}")
    tail = [line.strip() for line in lines if line.strip()][-3:]
    return f"upload failed (exit {code}): {' | '.join(tail)}. Log: {log_path}"


def flash(project_dir: str | Path, port: str | None = None, env: str | None = None,
          on_line: Callable[[str], None] | None = None) -> Path:
    """Build if needed and upload a project (`pio run -t upload --upload-port P`).

    Returns:
        The log path (DIR/flash.log).
    """
    root = Path(project_dir)
    if not (root / "platformio.ini").is_file():
        from tinydeploy.core.manifest import rendered_board
        board = rendered_board(root)
        if board is not None and board.toolchain is not None:
            raise BadInput(f"{root} is rendered for a board with its own cross compiler, not flashed with "
                           f"PlatformIO; for the emulated board run `tinydeploy emulate {root}`")
        raise BadInput(f"{root} is not a PlatformIO project (no platformio.ini); run `tinydeploy render` first")
    port = choose_port(port)
    command = pio_command() + ["run", "-d", str(root), "-t", "upload", "--upload-port", port] + \
        (["-e", env] if env else [])
    log = root / "flash.log"
    code, lines = run_logged(command, log, on_line)
    if code != 0:
        raise StepFailed(explain_upload_failure(lines, code, port, log))
    return log


# The first byte of every ESP application and bootloader image (esp_image_header_t.magic,
# ESP_IMAGE_HEADER_MAGIC in ESP-IDF's esp_app_format.h).
ESP_IMAGE_MAGIC = 0xE9


def flash_firmware(firmware: str | Path, chip: str | None = None, port: str | None = None, offset: int = 0x10000,
                   log_path: str | Path | None = None, on_line: Callable[[str], None] | None = None,
                   board: Board | None = None) -> Path:
    """Write a prebuilt image with esptool (for farms of boards and CI).

    Args:
        firmware: the .bin image.
        chip: esptool's chip name (esp32, esp32s3, esp32c3, ...); the board's when None.
        port: serial port or pyserial URL (socket://...); detected when None.
        offset: flash address (0x10000 for a PlatformIO application image).
        log_path: where to save esptool's output (default: beside the image).
        board: the board profile, whose esptool_chip is used when chip is None.

    Returns:
        The log path.
    """
    check("--offset", offset)
    image = Path(firmware)
    if not image.is_file():
        raise BadInput(f"{image}: no such firmware image")
    with image.open("rb") as handle:
        head = handle.read(1)
    if not head:
        raise BadInput(f"{image}: the firmware image is empty")
    if head[0] != ESP_IMAGE_MAGIC:
        raise BadInput(f"{image}: not an ESP32 firmware image (it starts with byte 0x{head[0]:02x}; ESP images "
                       f"start with 0x{ESP_IMAGE_MAGIC:02x}). Give the .bin that `pio run` or esptool made")
    if chip is None and board is not None:
        if board.esptool_chip is None:
            raise BadInput(f"board {board.name} is not flashed with esptool (its profile has no esptool_chip); "
                           f"boards that are: {', '.join(b.name for b in load_boards().values() if b.esptool_chip)}")
        chip = board.esptool_chip
    if chip is None:
        raise BadInput(f"which chip? pass --chip ({', '.join(ESPTOOL_CHIPS)}) or --board")
    if chip not in ESPTOOL_CHIPS:
        raise BadInput(f"unknown chip '{chip}'. Chips: {', '.join(ESPTOOL_CHIPS)}")
    port = choose_port(port)
    log = Path(log_path) if log_path else image.with_suffix(".flash.log")
    command = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "write-flash",
               hex(offset), str(image)]
    code, lines = run_logged(command, log, on_line)
    if code != 0:
        raise StepFailed(explain_upload_failure(lines, code, port, log, remedy="chip"))
    return log
