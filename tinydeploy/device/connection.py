"""The serial link to a board: the host side of docs/protocol.md's transport.

A Connection sends commands and reads reply lines (logging every line to a file
as it arrives), and turns a silent or failing device into a message that shows
the last lines read and where the full log is. load_input and read_info are the
protocol's two plain commands that every job needs (db load, info).
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path

from tinydeploy.core.errors import StepFailed
from tinydeploy.core.protocol import Line, parse_line

CHUNK = 31  # bytes per `db` command, as the MLPerf Tiny runner sends them
SERIAL_HINT = "likely cabling, drivers or a port in use by another program (a serial monitor?)"


def shown(text: str, limit: int = 200) -> str:
    """Device text made safe to print: control characters (terminal escapes, BEL, NUL) become
    visible escapes, and long text is cut, saying so."""
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)
    return safe if len(safe) <= limit else safe[:limit] + f"... ({len(safe) - limit} more characters)"


class DeviceTimeout(StepFailed):
    """The device stopped answering."""


class DeviceError(StepFailed):
    """The device answered a command with e-[...]."""


class Connection:
    """A serial connection speaking the protocol, logging every line to a file.

    Args:
        port: a device path or any pyserial URL (socket://, rfc2217://).
        baud: the line rate.
        log_path: where the transcript goes.
        timeout: seconds to wait for a reply line.
        link: a pyserial port that someone else opened on `port` and will close (a test
            framework's): the connection talks over it instead of opening its own, and
            close() leaves it open. Its read timeout must be short (tens of milliseconds).
    """

    def __init__(self, port: str, baud: int, log_path: Path, timeout: float = 10.0, link=None):
        import serial
        self.port, self.timeout, self.log_path = port, timeout, Path(log_path)
        self.recent: deque[str] = deque(maxlen=12)
        self.boot: list[Line] = []  # what the device printed before answering name% (sync)
        self._buffer = b""
        self._owns_port = link is None
        self.log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        if link is not None:
            self.serial = link
            return
        try:
            self.serial = serial.serial_for_url(port, baudrate=baud, timeout=0.05, exclusive=True)
        except serial.SerialException as exc:
            self.log.close()
            text = str(exc)
            if "lock" in text.lower() or "busy" in text.lower():
                raise StepFailed(f"port {port} is busy: another program (or another bench) is using it") from exc
            raise StepFailed(f"cannot open {port}: {text} ({SERIAL_HINT})") from exc

    def close(self) -> None:
        try:
            if self._owns_port:
                self.serial.close()
        finally:
            self.log.close()

    def _record(self, direction: str, text: str) -> None:
        self.log.write(f"{direction} {text}\n")
        self.log.flush()

    def reset(self) -> bool:
        """Pulse EN through RTS (IO0 high through DTR), as ESP32 auto-reset circuits wire them.
        Returns False where the port has no modem lines (a socket, a pty)."""
        try:
            self.serial.dtr = False
            self.serial.rts = True
            time.sleep(0.1)
            self.serial.rts = False
            return True
        except Exception:  # noqa: BLE001 - ports without modem control raise various errors
            return False

    def read_line(self, deadline: float) -> Line | None:
        """The next received line, parsed; None at the deadline."""
        import serial
        while b"\n" not in self._buffer:
            if time.monotonic() > deadline:
                return None
            try:
                chunk = self.serial.read(max(1, self.serial.in_waiting))
            except (serial.SerialException, OSError) as exc:
                if self._buffer:  # the last words before the link went away still count
                    self._buffer += b"\n"
                    break
                raise StepFailed(f"lost {self.port}: {exc} ({SERIAL_HINT}); log: {self.log_path}") from exc
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        text = raw.decode("latin-1").rstrip("\r")
        self._record("<<", text)
        self.recent.append(text)
        return parse_line(text)

    def timeout_error(self, waiting_for: str) -> DeviceTimeout:
        last = " | ".join(shown(line) for line in self.recent) or "(no complete line)"
        if self._buffer:
            last += f"; then, without a line end: {shown(self._buffer.decode('latin-1'))}"
        return DeviceTimeout(f"no {waiting_for} from {self.port} within {self.timeout:g} s. Last lines: {last}. "
                             f"Full log: {self.log_path}")

    def command(self, command: str) -> list[Line]:
        """Send a command and collect its reply up to m-ready.

        Raises:
            DeviceError: the device answered e-[...].
            DeviceTimeout: no m-ready in time.
        """
        return self.pipeline([command])[0]

    def pipeline(self, commands: list[str]) -> list[list[Line]]:
        """Send several commands back to back, then collect each one's reply in order.

        The device handles bytes as they arrive, so the host need not wait a
        round trip per command; this keeps --validate near the line rate.
        """
        self.send_all(commands)
        return self.replies(commands)

    def send_all(self, commands: list[str]) -> None:
        import serial
        for c in commands:
            self._record(">>", c + "%")
        try:
            self.serial.write("".join(c + "%" for c in commands).encode())
            self.serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise StepFailed(f"lost {self.port} while sending: {exc} ({SERIAL_HINT}); log: {self.log_path}") from exc

    def replies(self, commands: list[str]) -> list[list[Line]]:
        """The replies to commands already sent, in order."""
        return [self._reply(command) for command in commands]

    def _reply(self, command: str) -> list[Line]:
        lines: list[Line] = []
        deadline = time.monotonic() + self.timeout
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise self.timeout_error(f"reply to '{command}%'")
            if line.kind == "ready":
                break
            if line.kind != "noise":
                lines.append(line)
        errors = [line.value for line in lines if line.kind == "error"]
        if errors:
            if any("port busy" in e for e in errors):
                raise StepFailed(f"port {self.port} is busy: {shown(errors[0])}")
            raise DeviceError(f"the device answered '{command}%' with an error: {shown(errors[0])}. "
                              f"Log: {self.log_path}")
        return lines

    def sync(self, boot_wait: float = 2.0) -> None:
        """Get in step with the device: after a reset, read its boot lines up to m-ready;
        then send name% and read up to its reply, so that a board that boots late is
        still read as booting. Every line before the name reply is kept in ``boot``."""
        self.boot = []
        deadline = time.monotonic() + boot_wait
        while True:
            line = self.read_line(deadline)
            if line is None or line.kind == "ready":
                break
            self._boot_line(line)
        self.send_all(["name"])
        deadline = time.monotonic() + self.timeout
        named = False
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise self.timeout_error("reply to 'name%'")
            if line.kind == "name":
                named = True
            elif line.kind == "ready" and named:
                return
            elif not named and line.kind != "ready":
                self._boot_line(line)

    def _boot_line(self, line: Line) -> None:
        if line.kind == "error" and "port busy" in str(line.value):
            raise StepFailed(f"port {self.port} is busy: {shown(str(line.value))}")
        self.boot.append(line)

    def setup_failure(self, info: dict) -> str | None:
        """Why the firmware could not set its model up, in its own words, or None.

        The info line says so (setup_error, and no arena_used_bytes); the e-[...] line
        at boot says so too, and the lines the firmware printed just before it (such
        as TFLM's "Failed to resize buffer. Requested: ...") say how."""
        boot_errors = [i for i, line in enumerate(self.boot) if line.kind == "error"]
        error = info.get("setup_error") or (self.boot[boot_errors[0]].value if boot_errors else None)
        if not error:
            return None
        before = self.boot[:boot_errors[0]] if boot_errors else self.boot
        printed = [shown(line.text.strip()) for line in before if line.kind == "noise" and line.text.strip()][-6:]
        said = f" It printed at boot: {' | '.join(printed)}." if printed else ""
        return f"the firmware could not set up the model: {shown(str(error))}.{said} Log: {self.log_path}"


def load_commands(data: bytes) -> list[str]:
    """The commands that load data into the device's input buffer: db load N, then CHUNK bytes a db."""
    return [f"db load {len(data)}"] + ["db " + data[i:i + CHUNK].hex() for i in range(0, len(data), CHUNK)]


def load_input(conn: Connection, data: bytes) -> None:
    """Load data into the device's input buffer (the next inference's input)."""
    conn.pipeline(load_commands(data))


def read_info(conn: Connection) -> dict:
    """The device's info% object (docs/protocol.md): its model, arena, board, engine and timer.

    Raises:
        StepFailed: no info line, or one that is not JSON.
    """
    lines = conn.command("info")
    infos = [line.value for line in lines if line.kind == "info"]
    if not infos:
        raise StepFailed(f"the device did not answer info% (is it tinydeploy firmware?). Log: {conn.log_path}")
    try:
        return json.loads(infos[-1])
    except json.JSONDecodeError as exc:
        raise StepFailed(f"the device's info line is not JSON: {shown(infos[-1], 120)}") from exc
