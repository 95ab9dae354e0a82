"""Power monitors (tinydeploy.device.power): the spec syntax, the integral over marked windows,
and the PPK2 and LPM01A drivers against pty stand-ins speaking their wire protocols. The
Joulescope talks USB: its driver is checked on recorded arrays and against a fake device built
from the joulescope package's API, never against an instrument."""

import os
import sys
import time
import tty

import numpy as np
import pytest

from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.device import power
from tinydeploy.device.power import MONITORS, MonitorStopped, open_monitor, parse_power_monitor
from tinydeploy.device.power_joulescope import JoulescopeMonitor, recording_from_samples
from tinydeploy.device.power_lpm01a import Lpm01aMonitor
from tinydeploy.device.power_measure import Recording, integrate
from tinydeploy.device.power_ppk2 import Ppk2Monitor
from tinydeploy.device.power_standins import (Lpm01aStandIn, Ppk2StandIn, Waveform, ascii_dec,
                                              inference_waveform)

VOLTS = 3.3


def _run_for(waveform: Waveform):
    """What the board would do: compute for the waveform's length (the stand-in streams it)."""
    return lambda: time.sleep(waveform.seconds + 0.01)


# -- spec syntax and options ---------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("text, kind, port", [
    ("ppk2", "ppk2", None), ("PPK2:/dev/ttyACM0", "ppk2", "/dev/ttyACM0"), ("lpm01a:COM5", "lpm01a", "COM5"),
    ("joulescope:003512", "joulescope", "003512"), ("lpm01a:socket://127.0.0.1:5000", "lpm01a",
                                                    "socket://127.0.0.1:5000"), ("joulescope:", "joulescope", None),
])
def test_the_spec_is_kind_and_optional_port(text, kind, port):
    spec = parse_power_monitor(text)
    assert (spec.kind, spec.port) == (kind, port)
    assert str(parse_power_monitor(str(spec))) == str(spec)


@pytest.mark.unit
@pytest.mark.parametrize("text", ["otii:/dev/ttyUSB0", "", ":/dev/ttyACM0", "ppk3"])
def test_an_unknown_kind_is_bad_input_listing_the_kinds(text):
    with pytest.raises(BadInput, match="unknown kind .*accepted: ppk2, lpm01a, joulescope"):
        parse_power_monitor(text)
    assert set(MONITORS) == {"ppk2", "lpm01a", "joulescope"}


@pytest.mark.unit
def test_driver_options_are_checked_before_touching_a_port():
    assert isinstance(open_monitor("ppk2:/dev/null"), Ppk2Monitor)
    with pytest.raises(BadInput, match=r"ppk2: voltage 6.0 V is outside what the kit supplies \(0.8-5.0 V\)"):
        open_monitor("ppk2:/dev/null", voltage_v=6.0)
    with pytest.raises(BadInput, match="mode 'volt' is unknown; accepted: source, ampere"):
        open_monitor("ppk2", mode="volt")
    with pytest.raises(BadInput, match="marker channel 8 is not a logic input"):
        open_monitor("ppk2", marker_channel=8)
    with pytest.raises(BadInput, match="lpm01a needs its serial port"):
        open_monitor("lpm01a")
    with pytest.raises(BadInput, match=r"1.8-3.3 V"):
        open_monitor("lpm01a:/dev/null", voltage_v=5.0)
    with pytest.raises(BadInput, match="rate 3000 Hz; accepted: 5000, 2000"):
        open_monitor("lpm01a:/dev/null", rate_hz=3000)
    with pytest.raises(BadInput, match="joulescope: rate 7 Hz"):
        open_monitor("joulescope", rate_hz=7)
    with pytest.raises(BadInput, match="idle_s is 0"):
        Ppk2Monitor("/dev/null").record(lambda: None, idle_s=0)


# -- the integral ----------------------------------------------------------------------------------

def _recording(current, marker=None, events=(), rate=1000.0, volts=VOLTS):
    return Recording("test monitor", rate, np.asarray(current, dtype=float), volts,
                     marker=None if marker is None else np.asarray(marker), events=list(events))


@pytest.mark.unit
def test_only_the_marked_windows_are_integrated():
    rate = 1000.0
    current = np.full(400, 0.002)
    marker = np.zeros(400, dtype=int)
    for start in (50, 150, 250):  # three inferences of 20 ms at 40 mA
        current[start:start + 20], marker[start:start + 20] = 0.040, 1
    measured = integrate(_recording(current, marker, rate=rate), 3)
    assert measured.energy_uj == pytest.approx(0.040 * VOLTS * 0.020 * 1e6)  # 2640 µJ each
    assert measured.windows == 3 and measured.inference_ms == pytest.approx(20.0)
    assert measured.active_ma == pytest.approx(40.0) and measured.basis == "measured"
    # idle is excluded: changing every unmarked sample changes the idle figure, not the energy
    noisy = current.copy()
    noisy[marker == 0] = np.random.default_rng(0).uniform(0.0, 0.1, int((marker == 0).sum()))
    assert integrate(_recording(noisy, marker, rate=rate), 3).energy_uj == pytest.approx(measured.energy_uj)
    assert measured.idle_ma == pytest.approx(2.0)  # from 10 ms after the last window to the end


@pytest.mark.unit
def test_one_window_around_all_inferences_and_event_pairs_work_too():
    current = np.r_[np.full(100, 0.001), np.full(500, 0.030), np.full(100, 0.001)]
    marker = np.r_[np.zeros(100), np.ones(500), np.zeros(100)]
    by_marker = integrate(_recording(current, marker), 10)
    by_events = integrate(_recording(current, events=[100, 600]), 10)
    expected = 0.030 * VOLTS * 0.5 * 1e6 / 10
    assert by_marker.energy_uj == pytest.approx(expected) and by_events.energy_uj == pytest.approx(expected)
    assert by_events.windows == 1 and by_events.inference_ms == pytest.approx(50.0)


@pytest.mark.unit
def test_per_sample_voltage_and_gaps_from_range_switching():
    current = np.full(300, 0.010)
    current[120] = np.nan  # a Joulescope range switch
    voltage = np.full(300, 3.0)
    voltage[150:] = 2.0
    marker = np.r_[np.zeros(100), np.ones(100), np.zeros(100)]
    measured = integrate(Recording("js", 1000.0, current, voltage, marker=marker), 1)
    assert measured.energy_uj == pytest.approx(0.010 * (3.0 * 0.05 + 2.0 * 0.05) * 1e6)
    assert measured.voltage_v == pytest.approx(2.5)


@pytest.mark.unit
def test_bad_markings_are_step_failed_and_say_what_to_check():
    current = np.full(100, 0.01)
    with pytest.raises(StepFailed, match="no inference window was marked in 100 samples.*wired to the marker input"):
        integrate(_recording(current, np.zeros(100)), 1)
    with pytest.raises(StepFailed, match="2 marked windows for 3 inferences"):
        integrate(_recording(current, np.r_[np.zeros(10), np.ones(10), np.zeros(10), np.ones(10), np.zeros(60)]), 3)
    with pytest.raises(StepFailed, match="ended inside a marked inference window"):
        integrate(_recording(current, np.r_[np.zeros(90), np.ones(10)]), 1)
    with pytest.raises(StepFailed, match="3 timestamp events, an odd number"):
        integrate(_recording(current, events=[10, 20, 30]), 1)
    with pytest.raises(BadInput, match="inferences is 0"):
        integrate(_recording(current, np.ones(100)), 0)


@pytest.mark.unit
def test_the_lpm01a_number_format():
    assert ascii_dec(640.9e-6) == "6409-07" and ascii_dec(0.046) == "4600-05" and ascii_dec(0) == "0000+00"
    assert float("6409e-7") == pytest.approx(640.9e-6)


# -- PPK2 through ppk2-api, against a stand-in on a pty ------------------------------------------------

@pytest.fixture(scope="module")
def ppk2_api():
    return pytest.importorskip("ppk2_api.ppk2_api", reason="pip install 'tinydeploy[power]'")


def _measure(standin_cls, monitor_cls, waveform, inferences, volts=VOLTS, idle_s=0.15, **options):
    with standin_cls(waveform, **options.pop("standin", {})) as standin:
        with monitor_cls(standin.port, volts, **options) as monitor:
            return monitor.measure(_run_for(waveform), inferences, idle_s=idle_s), standin


@pytest.mark.host
@pytest.mark.parametrize("idle_a", [0.00024, 0.005])
def test_ppk2_measures_uj_per_inference_within_2_percent(ppk2_api, idle_a):
    waveform = inference_waveform(5, idle_a=idle_a, awake_a=0.012)
    measured, kit = _measure(Ppk2StandIn, Ppk2Monitor, waveform, 5)
    truth_uj = waveform.marked_energy_j(VOLTS) * 1e6 / 5
    assert measured.energy_uj == pytest.approx(truth_uj, rel=0.02)
    assert measured.windows == 5 and measured.inference_ms == pytest.approx(4.37, abs=0.02)
    assert measured.idle_ma == pytest.approx(idle_a * 1000, rel=0.02)  # the sleep current after the run
    assert measured.sample_rate_hz == 100_000 and measured.monitor == f"ppk2 on {kit.port}"
    assert (kit.voltage_mv, kit.mode, kit.dut_power) == (3300, "source", True)


@pytest.mark.host
def test_ppk2_in_ampere_mode_on_another_logic_input(ppk2_api):
    waveform = inference_waveform(3, one_window=True)
    measured, kit = _measure(Ppk2StandIn, Ppk2Monitor, waveform, 3, volts=1.8, mode="ampere", marker_channel=3,
                             standin={"marker_channel": 3})
    assert measured.windows == 1 and kit.mode == "ampere" and kit.voltage_mv == 1800
    assert measured.energy_uj == pytest.approx(waveform.marked_energy_j(1.8) * 1e6 / 3, rel=0.02)


@pytest.mark.host
def test_a_ppk2_that_stops_answering_is_step_failed_with_its_samples_kept(ppk2_api):
    waveform = inference_waveform(5)
    with Ppk2StandIn(waveform, stop_after=3000) as kit, Ppk2Monitor(kit.port, stall_s=0.3) as monitor:
        with pytest.raises(MonitorStopped) as err:
            monitor.measure(_run_for(waveform), 5, idle_s=1.0)
    assert isinstance(err.value, StepFailed)
    assert f"power monitor ppk2 on {kit.port} stopped answering" in str(err.value)
    assert "3000 samples kept" in str(err.value) and err.value.recording.samples == 3000


@pytest.mark.host
def test_the_first_inference_waits_for_the_first_sample_of_a_kit_slow_to_stream(ppk2_api):
    # a kit streams some time after its start command; an inference begun before then would be
    # an open window at sample 0, measured cut short (or, shorter than the delay, not at all)
    from tinydeploy.device.power_standins import DrivenWaveform
    waveform = DrivenWaveform(0.040, 0.010)

    def run():
        for _ in range(4):
            waveform.mark(True)
            time.sleep(0.005)
            waveform.mark(False)
            time.sleep(0.005)

    with Ppk2StandIn(waveform, start_delay_s=0.3) as kit, Ppk2Monitor(kit.port) as monitor:
        measured = monitor.measure(run, 4, idle_s=0.1)
        marked = waveform.marked_seconds(since=kit._streamer.started)
    assert measured.windows == len(marked) == 4
    assert measured.inference_ms == pytest.approx(sum(marked) / 4 * 1000, abs=0.02)


@pytest.mark.host
def test_a_port_that_is_no_ppk2_is_step_failed(ppk2_api):
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(StepFailed, match="no calibration metadata"):
            Ppk2Monitor(os.ttyname(slave)).open()
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(StepFailed, match="can't open the port"):
        Ppk2Monitor("/nonexistent/ttyACM9").open()


# -- LPM01A over its ASCII commands, against a stand-in on a pty ------------------------------------------

@pytest.mark.host
@pytest.mark.parametrize("one_window", [True, False])
def test_lpm01a_measures_uj_per_inference_within_2_percent(one_window):
    waveform = inference_waveform(20, one_window=one_window)
    measured, board = _measure(Lpm01aStandIn, Lpm01aMonitor, waveform, 20, volts=3.0)
    assert measured.energy_uj == pytest.approx(waveform.marked_energy_j(3.0) * 1e6 / 20, rel=0.02)
    assert measured.windows == (1 if one_window else 20) and measured.sample_rate_hz == 5000
    assert measured.idle_ma == pytest.approx(0.24, rel=0.02)
    assert board.received[:2] == ["htc", "volt 3000m"] and "output current" in board.received
    assert board.received[-2:] == ["stop", "hrc"] and board.powered


@pytest.mark.host
def test_an_lpm01a_that_stops_answering_is_step_failed_with_its_samples_kept():
    waveform = inference_waveform(20, one_window=True)
    with Lpm01aStandIn(waveform, stop_after=400) as board, Lpm01aMonitor(board.port, stall_s=0.3) as monitor:
        with pytest.raises(MonitorStopped, match=f"power monitor lpm01a on {board.port} stopped answering") as err:
            monitor.measure(_run_for(waveform), 20, idle_s=1.0)
    assert err.value.recording.samples == 400 and err.value.recording.events == [100]


@pytest.mark.host
def test_an_lpm01a_firmware_without_timestamp_events_is_named():
    class OldFirmware(Lpm01aStandIn):
        COMMANDS = tuple(c for c in Lpm01aStandIn.COMMANDS if c != "eventsrc")

    with OldFirmware(inference_waveform(1)) as board:
        with pytest.raises(StepFailed, match="refused 'eventsrc d7 fal': Error detail: command 'eventsrc' unknown"):
            Lpm01aMonitor(board.port).open()


# -- Joulescope: recorded arrays and a fake device ---------------------------------------------------------

def _samples_get(current, voltage, gpi0):
    return {"signals": {"current": {"value": np.asarray(current, dtype=np.float32), "units": "A"},
                        "voltage": {"value": np.asarray(voltage, dtype=np.float32), "units": "V"},
                        "current_lsb": {"value": np.asarray(gpi0, dtype=np.uint8), "units": ""}}}


@pytest.mark.unit
def test_joulescope_samples_become_a_recording_with_gpi0_as_the_marker():
    current = np.r_[np.full(50, 0.001), np.full(100, 0.05), np.full(50, 0.001)]
    gpi0 = np.r_[np.zeros(50), np.ones(100), np.zeros(50)]
    recording = recording_from_samples("joulescope", _samples_get(current, np.full(200, 3.3), gpi0), 10_000)
    measured = integrate(recording, 1)
    assert measured.energy_uj == pytest.approx(0.05 * 3.3 * 0.01 * 1e6, rel=1e-5)


class _FakeStreamBuffer:
    def __init__(self, data, first=0):
        self.data, self.first = data, first

    @property
    def sample_id_range(self):
        return self.first, self.first + len(self.data["signals"]["current"]["value"])

    def samples_get(self, start, stop, fields=None):
        assert fields == ["current", "voltage", "current_lsb"]
        return self.data


class _FakeJoulescope:
    """Only what the driver calls, with the signatures of joulescope 1.x's v1 Device."""

    def __init__(self, name, data, first=0, fail=False):
        self.name, self.fail = name, fail
        self.stream_buffer = _FakeStreamBuffer(data, first)
        self.parameters, self.calls = {}, []

    def __str__(self):
        return self.name

    def open(self, event_callback_fn=None, mode=None, timeout=None):
        self.calls.append("open")

    def close(self, timeout=None):
        self.calls.append("close")

    def parameter_set(self, name, value):
        self.parameters[name] = value

    def start(self, stop_fn=None, duration=None, contiguous_duration=None):
        self.calls.append("start")
        if self.fail:
            stop_fn(1, "USB transfer failed")

    def stop(self):
        self.calls.append("stop")


@pytest.mark.unit
def test_the_joulescope_driver_against_a_fake_device(monkeypatch):
    joulescope = pytest.importorskip("joulescope")
    current = np.r_[np.full(100, 0.002), np.full(200, 0.04), np.full(100, 0.002)]
    gpi0 = np.r_[np.zeros(100), np.ones(200), np.zeros(100)]
    device = _FakeJoulescope("JS220-003512", _samples_get(current, np.full(400, 3.3), gpi0))
    monkeypatch.setattr(joulescope, "scan", lambda name=None, config=None: [device])
    with JoulescopeMonitor("003512", rate_hz=10_000) as monitor:
        measured = monitor.measure(lambda: None, 4, idle_s=0.01)
    assert measured.energy_uj == pytest.approx(0.04 * 3.3 * 0.02 * 1e6 / 4, rel=1e-5)
    assert device.parameters == {"i_range": "auto", "sampling_frequency": 10_000, "current_lsb": "gpi0",
                                 "buffer_duration": 30.0}
    assert device.calls == ["open", "start", "stop", "close"]
    failing = _FakeJoulescope("JS220-000001", device.stream_buffer.data, fail=True)
    monkeypatch.setattr(joulescope, "scan", lambda name=None, config=None: [failing])
    with JoulescopeMonitor(None, rate_hz=10_000) as monitor:
        with pytest.raises(MonitorStopped, match="joulescope on JS220-000001 stopped answering: the stream stopped "
                                                 r"\(USB transfer failed\)"):
            monitor.measure(lambda: None, 1, idle_s=0.01)
    lost = _FakeJoulescope("JS110-000002", device.stream_buffer.data, first=5)
    monkeypatch.setattr(joulescope, "scan", lambda name=None, config=None: [lost])
    with JoulescopeMonitor(None, rate_hz=10_000) as monitor:
        with pytest.raises(StepFailed, match="outlasted its 30 s buffer and lost its first 5 samples"):
            monitor.measure(lambda: None, 1, idle_s=0.01)


@pytest.mark.host
def test_no_joulescope_attached_is_step_failed():
    pytest.importorskip("joulescope")
    with pytest.raises(StepFailed, match="0 matching Joulescopes on USB"):
        JoulescopeMonitor("999999").open()


@pytest.mark.unit
def test_a_missing_driver_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ppk2_api", None)
    monkeypatch.setitem(sys.modules, "ppk2_api.ppk2_api", None)
    with pytest.raises(BadInput, match=r"pip install 'tinydeploy\[power\]'"):
        Ppk2Monitor("/dev/null").open()
    monkeypatch.setitem(sys.modules, "joulescope", None)
    with pytest.raises(BadInput, match=r"joulescope package: pip install 'tinydeploy\[power\]'"):
        JoulescopeMonitor(None).open()


@pytest.mark.unit
@pytest.mark.parametrize("module", ["ppk2_api", "ppk2_api.ppk2_api", "joulescope", "joulescope.v1"])
def test_a_missing_power_package_anywhere_is_bad_input_naming_the_power_extra(module, monkeypatch, capsys):
    """core.errors.EXTRA_MODULES maps the drivers' packages to the power extra, so a
    ModuleNotFoundError for one that escapes a command exits 2 naming the install."""
    import tomllib
    from pathlib import Path

    from tinydeploy import api, cli
    from tinydeploy.core.errors import EXTRA_MODULES, extra_missing
    mapped = extra_missing(ModuleNotFoundError(f"No module named {module!r}", name=module))
    assert isinstance(mapped, BadInput) and mapped.exit_code == 2
    assert f"this needs {module.split('.')[0]}" in str(mapped) and "pip install 'tinydeploy[power]'" in str(mapped)
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES.values()) <= set(extras)  # every extra named is one pip knows
    packages = {r.split(">")[0].split("=")[0].split("<")[0].strip().replace("-", "_") for r in extras["power"]}
    assert {m for m, extra in EXTRA_MODULES.items() if extra == "power"} == packages == {"ppk2_api", "joulescope"}

    def bench(*_, **__):  # a driver whose own import check missed a module of its package
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    monkeypatch.setattr(api, "bench", bench)
    assert cli.main(["bench", "--port", "socket://127.0.0.1:1", "--power-monitor", "ppk2"]) == 2
    assert "pip install 'tinydeploy[power]'" in capsys.readouterr().err


@pytest.mark.unit
def test_the_registry_is_the_only_list_of_kinds():
    assert power.MONITORS["ppk2"] is Ppk2Monitor and power.MONITORS["lpm01a"] is Lpm01aMonitor
    assert all(cls.kind == kind for kind, cls in power.MONITORS.items())
