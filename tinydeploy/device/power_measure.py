"""What every power monitor shares: a recording of current, the marked inference windows in it,
and the integral that turns them into measured µJ per inference.

A monitor (tinydeploy.device.power) records current while the board runs a known number of
inferences and then idles. The board marks its inference windows: a GPIO the monitor samples as
a logic channel (PPK2 D0, Joulescope GPI0), high while it computes, or a timestamp pulse at the
start and end of the timed loop (the LPM01A's events, MLPerf Tiny's energy mode). Only the
samples inside the marked windows are integrated; the rest is idle, and its mean current is
reported separately.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinydeploy.core.errors import BadInput, StepFailed

MEASURED = "measured"
IDLE_GUARD_S = 0.01  # idle current is read from this long after the last window closes (the board settles into sleep)


@dataclass
class Recording:
    """Samples from one run of a monitor.

    current_a: amperes per sample. voltage_v: the supply (one figure, or per sample).
    marker: per-sample logic level of the inference marker, or None where the monitor reports
    timestamp events instead (events: sample indices, each the start or end of a window).
    """

    monitor: str  # "ppk2 on /dev/ttyACM0"
    sample_rate_hz: float
    current_a: np.ndarray
    voltage_v: float | np.ndarray
    marker: np.ndarray | None = None
    events: list[int] = field(default_factory=list)
    marker_input: str = "the marker input"  # where the DUT's marker goes, for messages

    @property
    def samples(self) -> int:
        return len(self.current_a)

    def windows(self) -> list[tuple[int, int]]:
        """The marked inference windows as [start, stop) sample ranges.

        Raises:
            StepFailed: the recording ends inside a window, or an odd number of events.
        """
        if self.marker is not None:
            return marker_windows(self.marker, self.monitor)
        return event_windows(self.events, self.monitor)


def marker_windows(marker: np.ndarray, monitor: str = "monitor") -> list[tuple[int, int]]:
    """[start, stop) runs where the marker is high. A run still open at the end is an error:
    the recording stopped before the board finished (idle longer)."""
    level = np.asarray(marker).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate(([0], level, [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(level) and level[-1]:
        raise StepFailed(f"{monitor}: the recording ended inside a marked inference window (the marker was still "
                         "high); record longer after the inferences")
    return list(zip(starts.tolist(), stops.tolist()))


def event_windows(events: list[int], monitor: str = "monitor") -> list[tuple[int, int]]:
    """Windows from timestamp events taken in pairs (start, end), as MLPerf Tiny's runner times
    a loop of inferences between two timestamps."""
    if len(events) % 2:
        raise StepFailed(f"{monitor}: {len(events)} timestamp events, an odd number: the recording ended inside "
                         "the timed window, or the board's timestamp pulse was missed")
    return [(int(events[i]), int(events[i + 1])) for i in range(0, len(events), 2)]


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    """NaN samples (an instrument's range switch) replaced by linear interpolation."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    if bad.all():
        raise StepFailed("every sample is NaN: the monitor measured nothing")
    good = np.flatnonzero(~bad)
    filled = values.copy()
    filled[bad] = np.interp(np.flatnonzero(bad), good, values[good])
    return filled


@dataclass(frozen=True)
class PowerMeasurement:
    """Measured energy per inference and idle current, from one recording."""

    monitor: str
    inferences: int
    windows: int
    energy_uj: float  # per inference: only the marked windows, integrated
    inference_ms: float  # marked time per inference
    active_ma: float  # mean current inside the windows
    idle_ma: float | None  # mean current after the last window (None: too little idle recorded)
    idle_s: float
    sample_rate_hz: float
    samples: int
    voltage_v: float  # mean supply voltage inside the windows
    basis: str = MEASURED

    def to_dict(self) -> dict:
        return {"monitor": self.monitor, "inferences": self.inferences, "windows": self.windows,
                "energy_uj": self.energy_uj, "inference_ms": self.inference_ms, "active_ma": self.active_ma,
                "idle_ma": self.idle_ma, "idle_s": self.idle_s, "sample_rate_hz": self.sample_rate_hz,
                "samples": self.samples, "voltage_v": self.voltage_v, "basis": self.basis}


def integrate(recording: Recording, inferences: int) -> PowerMeasurement:
    """Measured µJ per inference: the integral of current x voltage over the marked windows only,
    divided by the number of inferences; idle current from the samples after the last window.

    Args:
        recording: the monitor's samples and markers.
        inferences: how many inferences the board ran while recording.

    Raises:
        BadInput: inferences below 1.
        StepFailed: no window was marked, or the count of windows is neither 1 (one window
            around all inferences) nor `inferences` (one each).
    """
    if isinstance(inferences, bool) or not isinstance(inferences, int) or inferences < 1:
        raise BadInput(f"inferences is {inferences!r}; it must be a whole number of 1 or more")
    windows = recording.windows()
    if not windows:
        raise StepFailed(f"{recording.monitor}: no inference window was marked in {recording.samples} samples; "
                         f"is the board's marker GPIO wired to {recording.marker_input}?")
    if len(windows) not in (1, inferences):
        raise StepFailed(f"{recording.monitor}: {len(windows)} marked windows for {inferences} inferences; the "
                         "marker should rise once per inference or once around all of them")
    current = _fill_gaps(recording.current_a)
    voltage = (np.full(len(current), float(recording.voltage_v)) if np.isscalar(recording.voltage_v)
               else _fill_gaps(recording.voltage_v))
    inside = np.zeros(len(current), dtype=bool)
    for start, stop in windows:
        inside[start:stop] = True
    dt = 1.0 / recording.sample_rate_hz
    energy_j = float(np.sum(current[inside] * voltage[inside]) * dt)
    idle_from = windows[-1][1] + int(round(IDLE_GUARD_S * recording.sample_rate_hz))
    idle = current[idle_from:]
    idle_ma = float(np.mean(idle) * 1000) if len(idle) >= 10 else None
    return PowerMeasurement(
        monitor=recording.monitor, inferences=inferences, windows=len(windows),
        energy_uj=energy_j * 1e6 / inferences, inference_ms=float(inside.sum()) * dt * 1000 / inferences,
        active_ma=float(np.mean(current[inside]) * 1000), idle_ma=idle_ma, idle_s=len(idle) * dt,
        sample_rate_hz=recording.sample_rate_hz, samples=recording.samples,
        voltage_v=float(np.mean(voltage[inside])))


class MonitorStopped(StepFailed):
    """A monitor stopped answering mid-run. `recording` keeps the samples it had sent."""

    def __init__(self, message: str, recording: Recording | None):
        super().__init__(message)
        self.recording = recording


class PowerMonitor(ABC):
    """A power monitor: records current while the board runs inferences, then while it idles.

    Subclasses (one per instrument) implement open(), close(), _start(), _stop() -> Recording
    and _stalled() -> a reason or "".

    Args:
        port: where the instrument is (a serial port, or for a Joulescope its serial number).
        voltage_v: the supply voltage the monitor gives the board (or, on a monitor that only
            measures current, the board's supply).
        stall_s: silence after which a streaming monitor counts as stopped.
    """

    kind = ""
    sample_rate_hz = 0.0

    def __init__(self, port: str | None, voltage_v: float = 3.3, stall_s: float = 0.5):
        self.port = port
        self.voltage_v = float(voltage_v)
        self.stall_s = stall_s

    @property
    def label(self) -> str:
        return f"{self.kind} on {self.port}" if self.port else self.kind

    @abstractmethod
    def open(self) -> None:
        ...

    @abstractmethod
    def close(self) -> None:
        ...

    @abstractmethod
    def _start(self) -> None:
        ...

    @abstractmethod
    def _stop(self) -> Recording:
        ...

    def _stalled(self) -> str:
        return ""

    def _streaming(self) -> bool:
        """Samples have begun to arrive since _start() (a monitor whose start returns only once it
        streams keeps this default)."""
        return True

    def record(self, run: Callable[[], object], idle_s: float = 0.5) -> Recording:
        """Record while run() makes the board compute, then idle_s seconds of idle.

        Raises:
            MonitorStopped: the monitor stopped answering (the samples so far are on the error).
        """
        if not idle_s > 0:
            raise BadInput(f"idle_s is {idle_s!r}; it must be above 0 (the idle window after the inferences)")
        self._start()
        try:
            # the first inference must not begin before the first sample: a window open at sample 0
            # would be measured cut short. A monitor that never streams is reported after the runs,
            # whose timings are kept.
            while not self._streaming() and not self._stalled():
                time.sleep(0.001)
            run()
            until = time.monotonic() + idle_s
            while time.monotonic() < until and not self._stalled():
                time.sleep(min(0.02, max(until - time.monotonic(), 0)))
            reason = self._stalled()  # judged before stopping: a stopped stream is silent by design
        finally:
            recording = self._stop()
        if reason:
            raise MonitorStopped(f"power monitor {self.label} stopped answering: {reason}; {recording.samples} "
                                 "samples kept (on this error's .recording). Check its USB cable and that no other "
                                 "program holds the port", recording)
        return recording

    def measure(self, run: Callable[[], object], inferences: int, idle_s: float = 0.5) -> PowerMeasurement:
        """Measured µJ per inference and idle current.

        Args:
            run: makes the board run `inferences` inferences, marking them (returns when done).
            inferences: how many inferences run() makes.
            idle_s: seconds of idle recorded after them.

        Raises:
            BadInput: inferences below 1 or idle_s not above 0.
            MonitorStopped: the monitor stopped answering mid-run (a StepFailed).
            StepFailed: no marked window, or a count of windows that matches neither 1 nor inferences.
        """
        if isinstance(inferences, bool) or not isinstance(inferences, int) or inferences < 1:
            raise BadInput(f"inferences is {inferences!r}; it must be a whole number of 1 or more")
        return integrate(self.record(run, idle_s), inferences)

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


class ByteReader:
    """A thread that collects what a serial port sends, and notices when it goes silent.

    read: returns the bytes available now (b"" if none); raises OSError-like errors when the
    port is gone, which count as a stall.
    """

    def __init__(self, read: Callable[[], bytes], stall_s: float):
        self._read = read
        self.stall_s = stall_s
        self.data = bytearray()
        self.error = ""
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self.last = time.monotonic()
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                chunk = self._read()
            except Exception as exc:  # noqa: BLE001 - a vanished port raises whatever its driver raises
                self.error = f"reading the port failed ({exc})"
                return
            if chunk:
                with self._lock:
                    self.data += chunk
                self.last = time.monotonic()
            else:
                time.sleep(0.001)

    def silent_for(self) -> float:
        return time.monotonic() - self.last

    def stalled(self) -> str:
        if self.error:
            return self.error
        quiet = self.silent_for()
        return f"nothing received for {quiet:.1f} s while streaming" if quiet > self.stall_s else ""

    def drain(self, quiet_s: float = 0.1, limit_s: float = 2.0) -> None:
        """Wait until the port has been quiet for quiet_s (at most limit_s), then stop."""
        until = time.monotonic() + limit_s
        while time.monotonic() < until and self.silent_for() < quiet_s and not self.error:
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(timeout=2)

    def take(self) -> bytes:
        with self._lock:
            return bytes(self.data)
