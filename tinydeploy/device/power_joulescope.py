"""A Joulescope (JS110 or JS220), through the `joulescope` package's v1 API.

It talks USB, so no pty stand-in can stand in for it: tinydeploy's tests check this driver's
argument handling and its maths on recorded arrays, and its calls against a fake device built
from the package's documented API (scan, open, parameter_set, start/stop, stream_buffer.
samples_get); they never ran against a real instrument.

The Joulescope measures voltage as well as current, so each sample's power is its own I x V.
The board's marker GPIO goes to the Joulescope's general-purpose input 0, which arrives in each
sample as the "current_lsb" field (on a JS110 after routing it there with current_lsb=gpi0).
"""

from __future__ import annotations

import numpy as np

from tinydeploy.core.errors import EXTRA_MODULES, BadInput, StepFailed
from tinydeploy.device.power_measure import PowerMonitor, Recording

# sampling_frequency values both models accept (the package's parameter table)
JOULESCOPE_RATES_HZ = (1_000_000, 500_000, 200_000, 100_000, 50_000, 20_000, 10_000, 5_000, 2_000, 1_000)


def _joulescope():
    try:
        import joulescope
    except ModuleNotFoundError as exc:
        raise BadInput("the joulescope power monitor needs the joulescope package: "
                       f"pip install 'tinydeploy[{EXTRA_MODULES['joulescope']}]'") from exc
    return joulescope


def recording_from_samples(label: str, data: dict, rate_hz: float) -> Recording:
    """A Recording from stream_buffer.samples_get(..., fields=["current", "voltage", "current_lsb"])."""
    signals = data["signals"]
    return Recording(label, rate_hz, np.asarray(signals["current"]["value"], dtype=np.float64),
                     np.asarray(signals["voltage"]["value"], dtype=np.float64),
                     marker=np.asarray(signals["current_lsb"]["value"]).astype(np.int64) & 1,
                     marker_input="the Joulescope's GPI0")


class JoulescopeMonitor(PowerMonitor):
    """A Joulescope found on USB (by serial number where `port` names one).

    Args:
        port: a serial number ("003512" or "JS220-003512"), or None for the only one attached.
        voltage_v: unused for the integral (the Joulescope measures each sample's voltage);
            kept for the common signature.
        rate_hz: samples per second, one of JOULESCOPE_RATES_HZ.
        buffer_s: seconds of samples kept; a run longer than this loses its start.
    """

    kind = "joulescope"

    def __init__(self, port: str | None, voltage_v: float = 3.3, rate_hz: int = 100_000, buffer_s: float = 30.0,
                 stall_s: float = 0.5):
        super().__init__(port, voltage_v, stall_s)
        if rate_hz not in JOULESCOPE_RATES_HZ:
            raise BadInput(f"joulescope: rate {rate_hz} Hz; accepted: {', '.join(map(str, JOULESCOPE_RATES_HZ))}")
        if not buffer_s > 0:
            raise BadInput(f"joulescope: buffer of {buffer_s!r} s; it must be above 0")
        self.sample_rate_hz = float(rate_hz)
        self.buffer_s = buffer_s
        self._device = None
        self._failure = ""

    def open(self) -> None:
        joulescope = _joulescope()
        devices = joulescope.scan(config="auto")
        if self.port:
            wanted = self.port.lower()
            devices = [d for d in devices if str(d).lower() == wanted or str(d).lower().endswith("-" + wanted)]
        if len(devices) != 1:
            found = ", ".join(str(d) for d in joulescope.scan(config="off")) or "none"
            raise StepFailed(f"power monitor {self.label}: {len(devices)} matching Joulescopes on USB "
                             f"(attached: {found}); name one by serial number: --power-monitor joulescope:SERIAL")
        self._device = devices[0]
        if not self.port:
            self.port = str(self._device)
        self._device.open()
        self._device.parameter_set("i_range", "auto")
        self._device.parameter_set("sampling_frequency", int(self.sample_rate_hz))
        self._device.parameter_set("current_lsb", "gpi0")  # JS110: GPI0 into each sample; JS220 sends it anyway
        self._device.parameter_set("buffer_duration", self.buffer_s)

    def close(self) -> None:
        if self._device is not None:
            try:
                self._device.close()
            finally:
                self._device = None

    def _on_stop(self, event: int = 0, message: str = "") -> None:
        if event:
            self._failure = f"the stream stopped ({message or 'event ' + str(event)})"

    def _start(self) -> None:
        if self._device is None:
            raise StepFailed(f"power monitor {self.label} is not open")
        self._failure = ""
        self._device.start(stop_fn=self._on_stop)

    def _stalled(self) -> str:
        return self._failure

    def _stop(self) -> Recording:
        self._device.stop()
        buffer = self._device.stream_buffer
        first, last = buffer.sample_id_range
        data = buffer.samples_get(first, last, fields=["current", "voltage", "current_lsb"])
        recording = recording_from_samples(self.label, data, self.sample_rate_hz)
        if first > 0 and not self._failure:
            raise StepFailed(f"power monitor {self.label}: the run outlasted its {self.buffer_s:g} s buffer and "
                             f"lost its first {first} samples; give a longer buffer")
        return recording
