"""`tinydeploy flash --model model.bin --serial --port P`: a model image through the application's
own serial protocol into the inactive slot (docs/model-update.md), then the device restarts into
it; what it then reports (slot, version, sha256) is checked against the image.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from tinydeploy.core import image
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.protocol import MAX_CHUNK
from tinydeploy.device.connection import Connection, DeviceError, read_info, shown

RETRIES = 3  # resends of a chunk whose CRC the device found wrong


def send_chunk(conn: Connection, data: bytes) -> int:
    """One `model chunk L CRC%` and its raw bytes; the device's count of bytes received."""
    import serial
    command = f"model chunk {len(data)} {image.crc32(data):08x}"
    conn._record(">>", f"{command}% + {len(data)} bytes")
    try:
        conn.serial.write(command.encode() + b"%" + data)
        conn.serial.flush()
    except (serial.SerialException, OSError) as exc:
        raise StepFailed(f"lost {conn.port} while sending: {exc}; log: {conn.log_path}") from exc
    lines = conn.replies([command])[0]
    counts = [line.text for line in lines if line.text.startswith("m-model-chunk-[")]
    if not counts:
        raise StepFailed(f"the device did not acknowledge a model chunk. Log: {conn.log_path}")
    return int(counts[-1][len("m-model-chunk-["):-1])


def wait_boot(conn: Connection, timeout: float) -> list[str]:
    """Read the restart's lines up to m-ready; the errors it printed (slots it refused)."""
    errors, deadline = [], time.monotonic() + timeout
    while True:
        line = conn.read_line(deadline)
        if line is None:
            raise conn.timeout_error("boot banner after the commit")
        if line.kind == "error":
            errors.append(str(line.value))
        if line.kind == "ready":
            return errors


def upload_model(port: str, image_path: str | Path, log_path: str | Path, baud: int = 115200, chunk: int = 512,
                 timeout: float = 10.0, on_progress: Callable[[int, int], None] | None = None) -> dict:
    """Upload a model image over serial and check the device runs it afterwards.

    Returns:
        {"slot", "version", "model_sha256", "bytes", "seconds", "bytes_per_second", "before", "boot_errors"}.

    Raises:
        BadInput: the image is not a valid one, or the chunk size is out of range.
        StepFailed: the device refused the image (its words), or runs something else after the restart.
    """
    if not 1 <= chunk <= MAX_CHUNK:
        raise BadInput(f"--chunk {chunk}: 1 to {MAX_CHUNK} bytes")
    path = Path(image_path)
    data, parsed = image.load(path)  # refuse a bad image before touching the device
    header = parsed.header
    conn = Connection(port, baud, Path(log_path), timeout)
    try:
        conn.sync(boot_wait=0.2)  # no reset: the device is running, only get in step with it
        before = read_info(conn)
        if "model_slot" not in before:
            raise StepFailed(f"the device on {port} keeps its model in the application (its info% has no "
                             "model_slot): render and flash it with --model-partition first")
        started = time.monotonic()
        try:
            conn.command(f"model begin {len(data)}")
            sent = 0
            while sent < len(data):
                piece = data[sent:sent + chunk]
                for attempt in range(RETRIES + 1):
                    try:
                        sent = send_chunk(conn, piece)
                        break
                    except DeviceError as exc:
                        if "send it again" not in str(exc) or attempt == RETRIES:
                            raise
                if on_progress:
                    on_progress(sent, len(data))
            lines = conn.command("model commit")
        except DeviceError as exc:
            raise StepFailed(f"the device refused the model: {exc}") from None
        seconds = time.monotonic() - started
        committed = [line.text for line in lines if line.text.startswith("m-model-committed-[")]
        boot_errors = wait_boot(conn, timeout)
        after = read_info(conn)
    finally:
        conn.close()
    if after.get("model_sha256") != header.model_sha256 or after.get("model_version") != header.version:
        raise StepFailed(f"after the restart the device runs {after.get('model_version')} "
                         f"({shown(str(after.get('model_sha256')))[:12]}) in slot {after.get('model_slot')}, not "
                         f"{header.version}: {' | '.join(boot_errors) or 'no reason printed'}")
    return {"slot": after.get("model_slot"), "version": header.version, "model_sha256": header.model_sha256,
            "bytes": len(data), "seconds": round(seconds, 4), "bytes_per_second": round(len(data) / seconds),
            "before": {"slot": before.get("model_slot"), "version": before.get("model_version")},
            "committed": committed[-1] if committed else None, "boot_errors": boot_errors}
