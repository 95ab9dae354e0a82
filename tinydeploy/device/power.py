"""Measuring energy per inference with a power monitor: `--power-monitor KIND[:PORT]`.

A small registry of instrument drivers, each a PowerMonitor (tinydeploy.device.power_measure):
open it, then measure(run, inferences) records current while run() makes the board compute
(marking each inference, or the loop, on a GPIO the monitor samples), and while it idles after.
The result is labelled "measured", beside the estimates of tinydeploy.costs.energy.

    with open_monitor(parse_power_monitor("ppk2:/dev/ttyACM0"), voltage_v=3.3) as monitor:
        measured = monitor.measure(lambda: run_inferences(100), inferences=100)
"""

from __future__ import annotations

from dataclasses import dataclass

from tinydeploy.core.errors import BadInput
from tinydeploy.device.power_joulescope import JoulescopeMonitor
from tinydeploy.device.power_lpm01a import Lpm01aMonitor
from tinydeploy.device.power_measure import MonitorStopped, PowerMeasurement, PowerMonitor, Recording, integrate
from tinydeploy.device.power_ppk2 import Ppk2Monitor

MONITORS: dict[str, type[PowerMonitor]] = {
    "ppk2": Ppk2Monitor,        # Nordic Power Profiler Kit II (ppk2-api, USB serial)
    "lpm01a": Lpm01aMonitor,    # ST X-NUCLEO-LPM01A PowerShield (ASCII serial; MLPerf Tiny's energy mode)
    "joulescope": JoulescopeMonitor,  # Joulescope JS110/JS220 (joulescope, USB)
}

__all__ = ["MONITORS", "MonitorSpec", "MonitorStopped", "PowerMeasurement", "PowerMonitor", "Recording",
           "integrate", "open_monitor", "parse_power_monitor"]


@dataclass(frozen=True)
class MonitorSpec:
    kind: str
    port: str | None  # a serial port, or for a Joulescope its serial number; None: find the only one

    def __str__(self) -> str:
        return f"{self.kind}:{self.port}" if self.port else self.kind


def parse_power_monitor(text: str) -> MonitorSpec:
    """Parse `--power-monitor KIND[:PORT]` ("ppk2", "ppk2:/dev/ttyACM0", "lpm01a:COM5", "joulescope:003512").

    Raises:
        BadInput: empty, or an unknown kind (the message lists the kinds).
    """
    kind, _, port = (text or "").strip().partition(":")
    kind = kind.strip().lower()
    if kind not in MONITORS:
        raise BadInput(f"--power-monitor {text!r}: unknown kind {kind!r}; accepted: {', '.join(MONITORS)} "
                       "(as KIND or KIND:PORT)")
    return MonitorSpec(kind, port.strip() or None)


def open_monitor(spec: MonitorSpec | str, voltage_v: float = 3.3, **options) -> PowerMonitor:
    """The driver for a monitor spec, not yet opened (use it as a context manager).

    Args:
        spec: a MonitorSpec or its text (KIND[:PORT]).
        voltage_v: the supply voltage (given to the board by a PPK2 in source mode or an LPM01A).
        options: the driver's own options (a PPK2's mode and marker_channel, a rate, ...).
    """
    if isinstance(spec, str):
        spec = parse_power_monitor(spec)
    return MONITORS[spec.kind](spec.port, voltage_v=voltage_v, **options)
