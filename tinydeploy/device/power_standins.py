"""Stand-in power monitors on a pty: a PPK2 and an LPM01A that speak their instruments' wire
protocols and stream a known current waveform, so the drivers (and ppk2-api underneath the
PPK2 one) are tested without the hardware, the way virtual_device stands in for a board. The
waveform is fixed (Waveform), or driven by a virtual device's inferences as they run
(DrivenWaveform, fed by VirtualDevice's marker).

PPK2 (as ppk2-api 0.9 expects it): single-byte commands, some with arguments (0x19 asks for the
calibration metadata, 0x0D sets the source voltage, 0x11 the mode, 0x0C switches the board's
power, 0x06 starts and 0x07 stops streaming). The metadata is "Key: value" lines ending with
"END". Each sample is a little-endian 32-bit word: bits 0-13 the ADC code, 14-16 the measuring
range, 24-31 the logic inputs D0-D7; current = (4 * code - O[range]) * 1.8 / 163840 / R[range].

LPM01A (ST's PowerShield firmware, UM2269, as MLPerf Tiny's runner drives it): ASCII command
lines answered "PowerShield > ack <command>" or "error"; after "start", one current per line
in ascii_dec ("6409-07" is 6409e-7 A), a "TimeStamp: 001s 000ms, buff 00%" line each second
of samples, and "event N fal" when the board pulses its timestamp pin; "stop" ends with
"Acquisition completed".
"""

from __future__ import annotations

import math
import os
import select
import threading
import time
import tty
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

PPK2_RANGE_OHMS = (1031.64, 101.65, 10.15, 0.94, 0.043)  # the stand-in's calibration (ppk2-api's defaults)
PPK2_OFFSETS = (112.0, 84.0, 64.0, 52.0, 40.0)  # ADC offsets per range, so the driver must apply them
PPK2_ADC_VOLTS = 1.8 / 163840  # volts per ADC step, as ppk2-api decodes it


@dataclass(frozen=True)
class Segment:
    seconds: float
    current_a: float
    marked: bool = False  # the board's marker is high (it computes)


class Waveform:
    """A piecewise-constant current the stand-in streams, then `tail_a` for ever after.

    Args:
        segments: in order.
        tail_a: the current after the last segment (the board idle or asleep).
    """

    def __init__(self, segments: list[Segment], tail_a: float):
        self.segments = list(segments)
        self.tail_a = tail_a
        self.edges_s = np.cumsum([0.0] + [s.seconds for s in segments])

    @property
    def seconds(self) -> float:
        return float(self.edges_s[-1])

    def restart(self, origin: float) -> None:
        """Streaming started (monotonic seconds): a fixed waveform starts over at every start."""

    def at(self, index: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """(current A, marker 0/1) at sample indices: each sample is the waveform at its start time."""
        t = index / rate_hz
        which = np.searchsorted(self.edges_s, t, side="right") - 1
        current = np.full(len(index), self.tail_a, dtype=np.float64)
        marker = np.zeros(len(index), dtype=np.int64)
        inside = which < len(self.segments)
        currents = np.array([s.current_a for s in self.segments] or [0.0])
        marks = np.array([int(s.marked) for s in self.segments] or [0])
        current[inside] = currents[which[inside]]
        marker[inside] = marks[which[inside]]
        return current, marker

    def marked_energy_j(self, voltage_v: float) -> float:
        """The true integral of current x voltage over the marked segments."""
        return sum(s.seconds * s.current_a * voltage_v for s in self.segments if s.marked)


class DrivenWaveform:
    """A board's current as it happens: `active_a` while the board marks an inference, `idle_a`
    otherwise. Whatever runs the inferences (a virtual device's marker) calls mark(True) before
    each and mark(False) after; the stand-in streams each sample after its time has passed, so
    every sample it sends reflects what the board was doing then.

    Args:
        active_a: the current while marked.
        idle_a: the current otherwise.
    """

    def __init__(self, active_a: float, idle_a: float):
        self.active_a, self.tail_a = active_a, idle_a
        self.origin = time.monotonic()  # the time of sample 0: the stand-in's start of streaming
        self.windows: list[list[float]] = []  # [start, end] monotonic seconds; end is inf while marked
        self._lock = threading.Lock()

    def restart(self, origin: float) -> None:
        self.origin = origin

    def mark(self, high: bool) -> None:
        with self._lock:  # the time taken under the lock: a chunk being sent is wholly before or after it
            now = time.monotonic()
            if high:
                self.windows.append([now, math.inf])
            elif self.windows and self.windows[-1][1] == math.inf:
                self.windows[-1][1] = now

    def at(self, index: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
        """(current A, marker 0/1) at sample indices."""
        t = self.origin + np.asarray(index) / rate_hz
        marker = np.zeros(len(t), dtype=np.int64)
        with self._lock:
            windows = [tuple(w) for w in self.windows if w[1] > t[0]] if len(t) else []
        for start, end in windows:
            marker[(t >= start) & (t < end)] = 1
        return np.where(marker == 1, self.active_a, self.tail_a), marker

    def marked_seconds(self, since: float) -> list[float]:
        """The length of each closed window that started after `since` (monotonic seconds)."""
        with self._lock:
            return [end - start for start, end in self.windows if start >= since and end != math.inf]


def inference_waveform(inferences: int, lead_s: float = 0.02, gap_s: float = 0.003,
                       idle_a: float = 0.00024, awake_a: float = 0.012,
                       phases: tuple[tuple[float, float], ...] = ((0.0031, 0.046), (0.00127, 0.031)),
                       one_window: bool = False) -> Waveform:
    """A board asleep, then `inferences` inferences (each `phases` of (seconds, amperes), marked),
    separated by awake gaps, then asleep. one_window marks the gaps too, as one window around all."""
    segments = [Segment(lead_s, idle_a)]
    for i in range(inferences):
        segments += [Segment(seconds, amperes, True) for seconds, amperes in phases]
        if i < inferences - 1:
            segments.append(Segment(gap_s, awake_a, one_window))
    segments.append(Segment(gap_s, awake_a))
    return Waveform(segments, idle_a)


class _PtyInstrument(ABC):
    """A pty whose far end runs an instrument's protocol in threads."""

    def __init__(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.received: list = []  # every command, for tests
        self._threads = [threading.Thread(target=self._listen, daemon=True)]
        self._threads[0].start()

    def _write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view and not self._stop.is_set():
                try:
                    _, ready, _ = select.select([], [self._master], [], 0.05)
                    if ready:
                        view = view[os.write(self._master, view):]
                except OSError:
                    return

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.05)
                if ready:
                    self._feed(os.read(self._master, 4096))
            except OSError:
                return

    @abstractmethod
    def _feed(self, data: bytes) -> None:
        """Handle bytes the host wrote to the instrument."""

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Streamer:
    """Paces samples at a rate: each tick sends the samples due since start."""

    def __init__(self, rate_hz: float, send, stop_after: int | None):
        self.rate_hz, self.send, self.stop_after = rate_hz, send, stop_after
        self.sent = 0
        self.running = threading.Event()
        self.silent = False  # went quiet on purpose (stop_after)
        self._started = 0.0
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> float:
        return self._started

    def start(self, delay_s: float = 0.0) -> None:
        """Sample 0 is delay_s from now; nothing is sent before it."""
        self.sent, self._started = 0, time.monotonic() + delay_s
        self.running.set()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.running.clear()
        if self._thread:
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while self.running.is_set():
            due = int((time.monotonic() - self._started) * self.rate_hz)
            if self.stop_after is not None and due >= self.stop_after:
                due = self.stop_after
            if due > self.sent:
                self.send(self.sent, due)
                self.sent = due
            if self.stop_after is not None and self.sent >= self.stop_after:
                self.silent = True
                return
            time.sleep(0.005)


class Ppk2StandIn(_PtyInstrument):
    """A PPK2 on a pty streaming `waveform` from the moment it is told to start.

    Args:
        waveform: the board's current.
        marker_channel: the logic input the marker appears on.
        stop_after: stop answering entirely after this many samples (to test a kit that dies).
        start_delay_s: the time from the start command to the first sample (a kit is not instant).
    """

    RATE_HZ = 100_000

    def __init__(self, waveform: Waveform, marker_channel: int = 0, stop_after: int | None = None,
                 start_delay_s: float = 0.0):
        self.waveform, self.marker_channel = waveform, marker_channel
        self.start_delay_s = start_delay_s
        self.voltage_mv = None
        self.mode = None
        self.dut_power = False
        self._pending = b""
        self._streamer = _Streamer(self.RATE_HZ, self._send, stop_after)
        super().__init__()

    def metadata(self) -> bytes:
        lines = ["Calibrated: 0"]
        lines += [f"R{i}: {r}" for i, r in enumerate(PPK2_RANGE_OHMS)]
        lines += [f"GS{i}: 0" for i in range(5)] + [f"GI{i}: 1" for i in range(5)]
        lines += [f"O{i}: {o}" for i, o in enumerate(PPK2_OFFSETS)]
        lines += [f"S{i}: 0" for i in range(5)] + [f"I{i}: 0" for i in range(5)] + [f"UG{i}: 1" for i in range(5)]
        lines += ["HW: 9173", "IA: 56", "END"]
        return ("\n".join(lines) + "\n").encode()

    @staticmethod
    def encode(current_a: np.ndarray, logic: np.ndarray) -> bytes:
        """Sample words for currents: each in the most sensitive range whose 14-bit code holds it."""
        codes = np.zeros(len(current_a), dtype=np.int64)
        ranges = np.full(len(current_a), len(PPK2_RANGE_OHMS) - 1, dtype=np.int64)
        placed = np.zeros(len(current_a), dtype=bool)
        for index, (ohms, offset) in enumerate(zip(PPK2_RANGE_OHMS, PPK2_OFFSETS)):
            code = np.rint((current_a * ohms / PPK2_ADC_VOLTS + offset) / 4).astype(np.int64)
            fits = ~placed & (code >= 0) & (code < 1 << 14)
            codes[fits], ranges[fits] = code[fits], index
            placed |= fits
        words = codes | (ranges << 14) | ((logic.astype(np.int64) & 0xFF) << 24)
        return words.astype("<u4").tobytes()

    def _send(self, first: int, stop: int) -> None:
        current, marker = self.waveform.at(np.arange(first, stop), self.RATE_HZ)
        self._write(self.encode(current, marker << self.marker_channel))

    @property
    def silent(self) -> bool:
        return self._streamer.silent

    def _feed(self, data: bytes) -> None:
        if self._streamer.silent:
            return  # a dead kit answers nothing
        data = self._pending + data
        arguments = {0x0D: 2, 0x11: 1, 0x0C: 1, 0x01: 3, 0x03: 1, 0x04: 1, 0x08: 1, 0x09: 1, 0x12: 1}
        i = 0
        while i < len(data):
            command = data[i]
            need = arguments.get(command, 0)
            if i + 1 + need > len(data):
                break
            args = data[i + 1:i + 1 + need]
            i += 1 + need
            self.received.append((command, bytes(args)))
            if command == 0x19:
                self._write(self.metadata())
            elif command == 0x0D:  # 800 mV is (3, 32); each step of the second byte is 1 mV
                self.voltage_mv = 800 + (args[0] - 3) * 256 + args[1] - 32
            elif command == 0x11:
                self.mode = {1: "ampere", 2: "source"}.get(args[0])
            elif command == 0x0C:
                self.dut_power = bool(args[0])
            elif command == 0x06:
                self._streamer.start(self.start_delay_s)
                self.waveform.restart(self._streamer.started)
            elif command == 0x07:
                self._streamer.stop()
        self._pending = data[i:]

    def close(self) -> None:
        self._streamer.stop()
        super().close()


def ascii_dec(value: float) -> str:
    """The LPM01A's ascii_dec number: four digits and a signed two-digit power of ten."""
    if value <= 0:
        return "0000+00"
    exponent = math.floor(math.log10(value)) - 3
    mantissa = round(value / 10 ** exponent)
    if mantissa >= 10000:
        mantissa, exponent = round(mantissa / 10), exponent + 1
    return f"{mantissa:04d}{'-' if exponent < 0 else '+'}{abs(exponent):02d}"


class Lpm01aStandIn(_PtyInstrument):
    """An LPM01A (PowerShield firmware) on a pty streaming `waveform` after "start".

    Timestamp events are sent where the waveform's marker changes (the board pulses its
    timestamp pin at the start and the end of its timed loop).

    Args:
        waveform: the board's current.
        stop_after: stop answering entirely after this many samples.
    """

    PROMPT = "PowerShield > "
    COMMANDS = ("htc", "hrc", "volt", "freq", "acqtime", "acqmode", "funcmode", "output", "format", "trigsrc",
                "trigdelay", "currthres", "pwr", "pwrend", "start", "stop", "targrst", "temp", "powershield",
                "version", "status", "lcd", "echo", "eventsrc", "range", "help")

    def __init__(self, waveform: Waveform, stop_after: int | None = None):
        self.waveform = waveform
        self.settings = {"freq": "100", "volt": "3300m", "output": "current", "format": "ascii_dec"}
        self.host_control = False
        self.powered = False
        self._line = b""
        self._events = 0
        self._level = 0
        self._streamer: _Streamer | None = None
        self._stop_after = stop_after
        super().__init__()

    @property
    def rate_hz(self) -> float:
        text = self.settings["freq"]
        return float(text[:-1]) * 1000 if text.endswith("k") else float(text)

    @property
    def voltage_v(self) -> float:
        text = self.settings["volt"]
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)

    @property
    def silent(self) -> bool:
        return bool(self._streamer and self._streamer.silent)

    def _say(self, *lines: str) -> None:
        self._write("".join(f"{line}\r\n" for line in lines).encode())

    def _send(self, first: int, stop: int) -> None:
        current, marker = self.waveform.at(np.arange(first, stop), self.rate_hz)
        per_second = int(self.rate_hz)
        lines = []
        for offset, (amperes, level) in enumerate(zip(current.tolist(), marker.tolist())):
            index = first + offset
            if level != self._level:
                self._events += 1
                lines.append(f"event {self._events} fal")
                self._level = level
            if index and index % per_second == 0:
                lines.append(f"TimeStamp: {index // per_second:03d}s 000ms, buff 00%")
            lines.append(ascii_dec(amperes))
        self._write("".join(f"{line}\r\n" for line in lines).encode())

    def _feed(self, data: bytes) -> None:
        if self.silent:
            return
        self._line += data
        while b"\n" in self._line:
            raw, self._line = self._line.split(b"\n", 1)
            self._command(raw.decode(errors="replace").strip())

    def _command(self, line: str) -> None:
        if not line:
            return
        self.received.append(line)
        word, _, rest = line.partition(" ")
        if word not in self.COMMANDS:
            self._say(f"{self.PROMPT}error {line}", f"Error detail: command '{word}' unknown")
            return
        if word != "htc" and not self.host_control and word not in ("powershield", "version", "echo"):
            self._say(f"{self.PROMPT}error {line}", "Error detail: PowerShield not controlled by host (send htc)")
            return
        if word in ("volt", "freq", "output", "format") and rest:
            self.settings[word] = rest
        if word == "htc":
            self.host_control = True
        elif word == "hrc":
            self.host_control = False
        elif word == "pwr":
            self.powered = rest.startswith("on")
        if word == "stop":
            if self._streamer:
                self._streamer.stop()
            self._say(f"{self.PROMPT}ack stop", "Acquisition completed")
            return
        self._say(f"{self.PROMPT}ack {line}")
        if word == "powershield":
            self._say("PowerShield present, id 0001-standin")
        elif word == "start":
            self._events, self._level = 0, 0
            self._streamer = _Streamer(self.rate_hz, self._send, self._stop_after)
            self._streamer.start()
            self.waveform.restart(self._streamer.started)

    def close(self) -> None:
        if self._streamer:
            self._streamer.stop()
        super().close()
