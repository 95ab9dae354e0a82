"""ST's X-NUCLEO-LPM01A ("PowerShield"), the power board MLPerf Tiny's energy mode uses, over its
ASCII serial command set (ST's UM2269; the commands and replies as MLPerf Tiny's runner uses them).

The board powers the device under test at `volt` (1.8-3.3 V) and streams its current, one
ascii_dec value per line ("6409-07" = 640.9 µA). The device marks the start and the end of its
timed loop by pulsing a GPIO wired to the LPM01A's D7, which the firmware reports as
"event N ..." lines between the samples; the inference window lies between two events.

Not confirmed against a board (none here): the exact line ending of replies, the "eventsrc"
command (used by MLPerf Tiny's runner, absent from UM2269's command list, so perhaps a newer
firmware's), and the event line's wording beyond "event <n> <edge>". The dynamic range of the
LPM01A (up to 10 mA in the firmware's own help text; ST's data brief says 50 mA) is below an
ESP32's active current: this driver suits low-power boards, and warns nothing on its own.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np

from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.device.power_measure import PowerMonitor, Recording

LPM01A_BAUD = 3_686_400  # UM2269's table of acquisition limits is for this rate
LPM01A_VOLTAGE_RANGE_V = (1.8, 3.3)  # "volt": [1800m; 3300m]
# ascii_dec sampling rates with unlimited acquisition time (UM2269: ascii_dec is unlimited up to 5 kHz)
LPM01A_RATES_HZ = {5000: "5k", 2000: "2k", 1000: "1k", 500: "500", 200: "200", 100: "100"}
PROMPT = "PowerShield > "
_VALUE = re.compile(r"(\d{4})([+-]\d{2})")
_EVENT = re.compile(r"event (\d+) (ris|fal)")


class Lpm01aMonitor(PowerMonitor):
    """An LPM01A on a serial port.

    Args:
        port: its serial port (required: the board has no USB name ppk2-api-style lookup here).
        voltage_v: the voltage it supplies to the board (1.8-3.3 V).
        rate_hz: samples per second, one of LPM01A_RATES_HZ.
        stall_s: silence after which the board counts as stopped.
        reply_s: how long to wait for each command's reply.
    """

    kind = "lpm01a"

    def __init__(self, port: str | None, voltage_v: float = 3.3, rate_hz: int = 5000, stall_s: float = 0.5,
                 reply_s: float = 2.0):
        super().__init__(port, voltage_v, stall_s)
        if not port:
            raise BadInput("lpm01a needs its serial port: --power-monitor lpm01a:/dev/ttyACM0")
        low, high = LPM01A_VOLTAGE_RANGE_V
        if not low <= self.voltage_v <= high:
            raise BadInput(f"lpm01a: voltage {voltage_v} V is outside what the board supplies ({low}-{high} V)")
        if rate_hz not in LPM01A_RATES_HZ:
            raise BadInput(f"lpm01a: rate {rate_hz} Hz; accepted: {', '.join(map(str, LPM01A_RATES_HZ))}")
        self.sample_rate_hz = float(rate_hz)
        self.reply_s = reply_s
        self._serial = None
        self._lock = threading.Lock()
        self._lines: list[str] = []  # replies (not samples) in order
        self._values: list[float] = []
        self._events: list[int] = []
        self._last = time.monotonic()
        self._error = ""
        self._dead = False  # stopped answering mid-run
        self._reading = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the line reader ------------------------------------------------------------------------
    def _read_loop(self) -> None:
        pending = b""
        while self._reading.is_set():
            try:
                chunk = self._serial.read(self._serial.in_waiting or 1)
            except Exception as exc:  # noqa: BLE001 - a vanished port raises its driver's error
                self._error = f"reading the port failed ({exc})"
                return
            if not chunk:
                continue
            self._last = time.monotonic()
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                self._classify(raw.decode("ascii", errors="replace").strip())

    def _classify(self, line: str) -> None:
        text = line[len(PROMPT):].strip() if line.startswith(PROMPT) else line
        if not text:
            return
        with self._lock:
            event = _EVENT.fullmatch(text)
            if event:
                self._events.append(len(self._values))
            elif text.startswith("TimeStamp"):
                pass  # a second of samples went by; the sample count is the clock
            elif _VALUE.match(text):  # a line may carry several values when the stream is fast
                self._values += [int(m) * 10.0 ** int(e) for m, e in _VALUE.findall(text)]
            else:
                self._lines.append(text)

    def _command(self, command: str, expect: str = "") -> list[str]:
        """Send one command; returns the reply lines after its ack. An error reply is StepFailed."""
        with self._lock:
            self._lines.clear()
        self._serial.write(f"{command}\r\n".encode())
        until = time.monotonic() + self.reply_s
        while time.monotonic() < until:
            with self._lock:
                lines = list(self._lines)
            for i, line in enumerate(lines):
                if line.startswith("error"):
                    time.sleep(0.05)  # the "Error detail: ..." line follows the error
                    with self._lock:
                        detail = next((x for x in self._lines[i + 1:] if x.startswith("Error detail")), line)
                    raise StepFailed(f"power monitor {self.label} refused '{command}': {detail}")
                if line.startswith("ack") and (not expect or any(expect in x for x in lines[i:])):
                    return lines[i + 1:]
            if self._error:
                break
            time.sleep(0.005)
        raise StepFailed(f"power monitor {self.label} did not answer '{command}' within {self.reply_s:g} s"
                         f"{' (' + self._error + ')' if self._error else ''}; check the cable and that it runs "
                         "ST's PowerShield firmware")

    # -- the monitor --------------------------------------------------------------------------
    def open(self) -> None:
        import serial
        try:
            self._serial = serial.Serial(self.port, LPM01A_BAUD, timeout=0.05, write_timeout=1)
        except (serial.SerialException, OSError) as exc:
            raise StepFailed(f"power monitor {self.label}: can't open the port ({exc}); check the cable, and that "
                             "no other program holds it") from exc
        self._reading.set()
        self._thread = threading.Thread(target=self._read_loop, daemon=True)
        self._thread.start()
        try:
            self._command("htc")
            for command in (f"volt {round(self.voltage_v * 1000)}m", f"freq {LPM01A_RATES_HZ[int(self.sample_rate_hz)]}",
                            "acqtime 0", "trigsrc sw", "output current", "format ascii_dec", "eventsrc d7 fal",
                            "pwr on nostatus"):
                self._command(command)
        except StepFailed:
            self.close()
            raise

    def close(self) -> None:
        if self._serial is None:
            return
        if not (self._error or self._dead):  # a board gone silent would only time out
            try:
                self._command("hrc")
            except StepFailed:
                pass
        self._reading.clear()
        if self._thread:
            self._thread.join(timeout=2)
        self._serial.close()
        self._serial = None

    def _start(self) -> None:
        with self._lock:
            self._values, self._events = [], []
        self._command("start")
        self._last = time.monotonic()

    def _stalled(self) -> str:
        if self._error:
            return self._error
        quiet = time.monotonic() - self._last
        return f"nothing received for {quiet:.1f} s while streaming" if quiet > self.stall_s else ""

    def _streaming(self) -> bool:
        with self._lock:
            return bool(self._values)

    def _stop(self) -> Recording:
        self._dead = bool(self._stalled())
        if not self._dead:
            try:
                self._command("stop", expect="Acquisition completed")
            except StepFailed:
                pass  # judged by _stalled(); the samples so far are kept
        with self._lock:
            values, events = list(self._values), list(self._events)
        return Recording(self.label, self.sample_rate_hz, np.asarray(values, dtype=np.float64), self.voltage_v,
                         events=events, marker_input="the LPM01A's D7 (its timestamp input)")
