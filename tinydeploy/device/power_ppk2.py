"""Nordic's Power Profiler Kit II, through the `ppk2-api` package (a USB serial device).

The PPK2 streams 100,000 samples a second once started, four bytes each: the ADC code, the
measurement range and its eight logic inputs D0-D7; ppk2-api turns them into µA with the
calibration the kit sends in its metadata. The board's marker GPIO goes to D0 (marker_channel).
In source mode the kit powers the board at voltage_v; in ampere mode it only measures and the
board's own supply must be voltage_v.
"""

from __future__ import annotations

import numpy as np

from tinydeploy.core.errors import EXTRA_MODULES, BadInput, StepFailed
from tinydeploy.device.power_measure import ByteReader, PowerMonitor, Recording

PPK2_SAMPLE_RATE_HZ = 100_000  # Nordic's PPK2 product brief: up to 100 ksps; ppk2-api's fetcher assumes the same
PPK2_VOLTAGE_RANGE_V = (0.8, 5.0)  # the source voltages the kit supplies (ppk2-api clamps to 800-5000 mV)
PPK2_MODES = ("source", "ampere")


def _ppk2_api():
    try:
        from ppk2_api.ppk2_api import PPK2_API
    except ModuleNotFoundError as exc:
        raise BadInput(f"the ppk2 power monitor needs ppk2-api: pip install 'tinydeploy[{EXTRA_MODULES['ppk2_api']}]'") \
            from exc
    return PPK2_API


class Ppk2Monitor(PowerMonitor):
    """A PPK2 on a serial port (found by its USB product name when no port is given).

    Args:
        port: the kit's serial port, or None to find the one PPK2 attached.
        voltage_v: source mode: the voltage it gives the board; ampere mode: the board's supply.
        mode: "source" or "ampere".
        marker_channel: the logic input (0-7) the board's marker GPIO is wired to.
        stall_s: silence after which the kit counts as stopped.
    """

    kind = "ppk2"
    sample_rate_hz = PPK2_SAMPLE_RATE_HZ

    def __init__(self, port: str | None, voltage_v: float = 3.3, mode: str = "source", marker_channel: int = 0,
                 stall_s: float = 0.5):
        super().__init__(port, voltage_v, stall_s)
        low, high = PPK2_VOLTAGE_RANGE_V
        if not low <= self.voltage_v <= high:
            raise BadInput(f"ppk2: voltage {voltage_v} V is outside what the kit supplies ({low}-{high} V)")
        if mode not in PPK2_MODES:
            raise BadInput(f"ppk2: mode {mode!r} is unknown; accepted: {', '.join(PPK2_MODES)}")
        if marker_channel not in range(8):
            raise BadInput(f"ppk2: marker channel {marker_channel!r} is not a logic input; accepted: 0-7 (D0-D7)")
        self.mode = mode
        self.marker_channel = marker_channel
        self._kit = None
        self._reader: ByteReader | None = None

    def open(self) -> None:
        api = _ppk2_api()
        if self.port is None:
            found = api.list_devices()
            if len(found) != 1:
                raise StepFailed(f"ppk2: {'no PPK2' if not found else 'several PPK2s (' + ', '.join(found) + ')'} "
                                 "found on USB; name its port: --power-monitor ppk2:/dev/ttyACM0")
            self.port = found[0]
        try:
            self._kit = api(self.port, timeout=1, write_timeout=1)
        except Exception as exc:  # noqa: BLE001 - pyserial's SerialException and OSError alike
            raise StepFailed(f"power monitor {self.label}: can't open the port ({exc}); check the cable, and that "
                             "no other program (nRF Connect) holds it") from exc
        if not self._kit.get_modifiers():
            self.close()
            raise StepFailed(f"power monitor {self.label}: no calibration metadata in reply to its request; is "
                             "this port a PPK2, and is nRF Connect's Power Profiler closed?")
        if self.mode == "source":
            self._kit.use_source_meter()
        else:
            self._kit.use_ampere_meter()
        self._kit.set_source_voltage(round(self.voltage_v * 1000))
        self._kit.toggle_DUT_power("ON")

    def close(self) -> None:
        if self._kit is not None:
            try:
                self._kit.ser.close()
            except Exception:  # noqa: BLE001 - closing a vanished port
                pass
            self._kit = None

    def _start(self) -> None:
        if self._kit is None:
            raise StepFailed(f"power monitor {self.label} is not open")
        self._kit.start_measuring()
        self._reader = ByteReader(self._kit.get_data, self.stall_s)
        self._reader.start()

    def _stalled(self) -> str:
        return self._reader.stalled() if self._reader else ""

    def _streaming(self) -> bool:
        return bool(self._reader and self._reader.data)

    def _stop(self) -> Recording:
        try:
            self._kit.stop_measuring()
        except Exception:  # noqa: BLE001 - a kit that vanished mid-run; its samples so far are kept
            pass
        self._reader.drain()
        raw = self._reader.take()
        whole = len(raw) // 4 * 4  # a sample cut by the stop is dropped
        samples_ua, logic = self._kit.get_samples(raw[:whole]) if whole else ([], [])
        return Recording(self.label, self.sample_rate_hz, np.asarray(samples_ua, dtype=np.float64) * 1e-6,
                         self.voltage_v, marker=(np.asarray(logic, dtype=np.int64) >> self.marker_channel) & 1,
                         marker_input=f"the PPK2's logic input D{self.marker_channel}")
