import json
import subprocess
import sys

import numpy as np
import pytest

from tinydeploy.runtime import tflm
from tinydeploy.device.bench import bench
from tinydeploy.device.connection import Connection, DeviceTimeout
from tinydeploy.cli import main
from tinydeploy.core.errors import StepFailed
from tinydeploy.core.model import load_model, parse_model
from tinydeploy.core.targets import Targets
from tinydeploy.device.verify import junit_xml, load_results, verify
from tinydeploy.device.virtual_device import VirtualDevice
from tests.helpers import run_cli

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def device(int8_cnn):
    with VirtualDevice(int8_cnn) as vd:
        yield vd, vd.open_pty()


@pytest.fixture
def samples():
    rng = np.random.default_rng(0)
    return rng.random((12, 32, 32, 1), dtype=np.float32), rng.integers(0, 10, 12)


def test_validation_refuses_samples_of_the_wrong_shape_before_sending_any(int8_cnn):
    """Samples that don't fit the model's input are bad input, named with both shapes (not a
    TFLM crash on the host reference); nothing reaches the device."""
    from tinydeploy.core.errors import BadInput
    from tinydeploy.device.validation import validate_on_device
    with pytest.raises(BadInput, match=r"samples of shape \[28, 28, 1\] \(3 samples, 3 labels\) don't fit .*"
                                       r"inputs of shape \[32, 32, 1\]"):
        validate_on_device(None, int8_cnn, np.zeros((3, 28, 28, 1), np.float32), np.zeros(3, int))
    with pytest.raises(BadInput, match=r"\(3 samples, 2 labels\)"):
        validate_on_device(None, int8_cnn, np.zeros((3, 32, 32, 1), np.float32), np.zeros(2, int))


def test_bench_reads_the_device_and_validates_against_host_tflm(device, int8_cnn, samples, tmp_path):
    vd, port = device
    result = bench(port, tmp_path, runs=5, warmup=1, expect_model=int8_cnn, samples=samples)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] and saved["virtual"]
    model = load_model(int8_cnn)
    assert saved["model_sha256"] == model.sha256 and saved["model_bytes"] == model.size_bytes
    assert saved["arena_used_bytes"] == tflm.measure_arena(model).arena_bytes  # TFLM's real figure
    latency = saved["latency_us"]
    assert latency["runs"] == 5 and latency["min"] <= latency["median"] <= latency["max"]
    assert latency["basis"].startswith("virtual")
    assert result.validation["samples"] == 12 and result.validation["top1_agreement"] == 1.0
    assert result.validation["max_output_diff_lsb"] == 0
    log = (tmp_path / "serial.log").read_text()
    assert ">> info%" in log and "<< m-ready" in log


def test_the_virtual_device_profiles_each_operator_on_the_host_and_says_so(device, int8_cnn, tmp_path):
    _, port = device
    result = bench(port, tmp_path, runs=1, warmup=0, expect_model=int8_cnn, profile=True)
    model = load_model(int8_cnn)
    layers = result.profile["layers"]
    assert [layer["op"] for layer in layers] == [op.name for op in model.operators]
    assert result.profile["basis"].startswith("virtual: host wall clock of each operator run alone")
    heaviest = max(layers, key=lambda layer: layer["macs"])  # the 64,800-MAC convolution, 3x the next
    assert max(layers, key=lambda layer: layer["ticks"]) is heaviest
    page = (tmp_path / "bench.html").read_text()
    assert page.count("<svg") == 1 and page.count("<rect") >= len(layers) + 1  # a bar a layer, and the legend


def test_each_operator_model_holds_one_operator_fed_by_its_own_inputs(int8_cnn):
    model = load_model(int8_cnn)
    ones = tflm.operator_models(model)
    assert len(ones) == len(model.operators)
    for op, data in zip(model.operators, ones):
        one = parse_model(data)
        assert [o.name for o in one.operators] == [op.name]
        assert [t.name for t in one.input_tensors] == [model.tensors[i].name for i in op.inputs
                                                        if i >= 0 and not model.tensors[i].is_constant]
        assert [t.name for t in one.output_tensors] == [model.tensors[i].name for i in op.outputs]


def test_bench_over_a_socket_url(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn) as vd:
        url = vd.open_tcp(0)
        result = bench(url, tmp_path, runs=2, warmup=0)
    assert url.startswith("socket://127.0.0.1:") and result.complete and result.virtual


def test_a_different_model_fails_with_both_hashes(device, float_cnn, int8_cnn, tmp_path):
    _, port = device
    other = load_model(float_cnn).sha256
    with pytest.raises(StepFailed, match=f"device sha256 {load_model(int8_cnn).sha256}, expected {other}"):
        bench(port, tmp_path, runs=1, expect_model=float_cnn)
    verdicts = verify(load_results(tmp_path))
    hash_check = next(v for v in verdicts if v.name == "model hash")
    assert not hash_check.met and other in hash_check.describe() and load_model(int8_cnn).sha256 in hash_check.describe()


def test_a_silent_device_times_out_and_keeps_the_partial_results(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn, stop_after=4) as vd:  # name, info, db load, then silence
        port = vd.open_pty()
        with pytest.raises(DeviceTimeout) as err:
            bench(port, tmp_path, runs=3, timeout=1.0)
    message = str(err.value)
    assert "Last lines:" in message and "m-[Expecting" in message and str(tmp_path / "serial.log") in message
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] is False and saved["device"]["model_sha256"] and "no reply" in saved["error"]
    assert "<< m-[Expecting" in (tmp_path / "serial.log").read_text()


# Commands before validation with runs=2, warmup=0: name, info, a 1,024-byte input in 31-byte
# db chunks (1 + 34 commands), two infers. Each validated sample is its load and an infer.
BEFORE_VALIDATION, PER_SAMPLE = 1 + 1 + 35 + 2, 35 + 1


def test_a_device_lost_mid_validation_keeps_every_sample_it_answered(int8_cnn, samples, tmp_path):
    with VirtualDevice(int8_cnn, stop_after=BEFORE_VALIDATION + 3 * PER_SAMPLE) as vd:
        port = vd.open_pty()
        with pytest.raises(DeviceTimeout):
            bench(port, tmp_path, runs=2, warmup=0, expect_model=int8_cnn, samples=samples, timeout=1.0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] is False and "no reply" in saved["error"]
    assert saved["latency_us"]["runs"] == 2 and "partial" not in saved["latency_us"]
    validation = saved["validation"]
    assert validation["partial"] and validation["samples"] == 3 and validation["samples_planned"] == 12
    assert validation["top1_agreement"] == 1.0
    verdicts = {v.name: v for v in verify(saved)}
    stopped = verdicts["bench completed"].describe()
    assert "3 of 12 samples validated" in stopped and "no reply" in stopped


def test_a_device_lost_mid_timing_keeps_the_timings_taken(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn, stop_after=1 + 1 + 35 + 2) as vd:  # two of five timings answered
        port = vd.open_pty()
        with pytest.raises(DeviceTimeout):
            bench(port, tmp_path, runs=5, warmup=0, timeout=1.0)
    latency = json.loads((tmp_path / "results.json").read_text())["latency_us"]
    assert latency["partial"] and latency["runs"] == 2 and latency["runs_planned"] == 5


def test_a_closed_link_is_a_step_failure_not_a_crash(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn) as vd:
        url = vd.open_tcp(0)
        conn = Connection(url, 115200, tmp_path / "serial.log", timeout=1.0)
        conn.sync()
        conn.serial.close()  # the link is gone (a board unplugged)
        with pytest.raises(StepFailed, match="lost socket://"):
            conn.send_all(["info"])
        conn.log.close()


def test_device_text_is_shown_with_control_characters_escaped(int8_cnn, tmp_path):
    from tinydeploy.device.connection import shown
    assert shown("ok\x1b[2J\x07 done") == "ok\\x1b[2J\\x07 done"
    assert shown("x" * 300).endswith("... (100 more characters)")


def test_two_benches_on_one_port(device, tmp_path):
    _, port = device
    first = Connection(port, 115200, tmp_path / "first.log")
    try:
        with pytest.raises(StepFailed, match=f"port {port} is busy"):
            bench(port, tmp_path / "second", runs=1)
    finally:
        first.close()


def test_two_benches_on_one_tcp_port(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn) as vd:
        url = vd.open_tcp(0)
        first = Connection(url, 115200, tmp_path / "first.log")
        first.sync()
        try:
            with pytest.raises(StepFailed, match="is busy"):
                bench(url, tmp_path / "second", runs=1, timeout=2)
        finally:
            first.close()


def test_verify_exit_codes_and_junit(device, tmp_path, capsys):
    _, port = device
    bench(port, tmp_path, runs=3)
    assert main(["verify", str(tmp_path), "--max-latency-ms", "1000", "--junit", str(tmp_path / "ok.xml")]) == 0
    assert 'failures="0"' in (tmp_path / "ok.xml").read_text()
    assert main(["verify", str(tmp_path / "results.json"), "--max-arena-kb", "1", "--max-latency-ms", "1000",
                 "--junit", str(tmp_path / "bad.xml")]) == 1
    xml = (tmp_path / "bad.xml").read_text()
    assert 'failures="1"' in xml and '<testcase classname="tinydeploy.device.verify" name="arena"><failure' in xml
    assert "targets missed: arena" in capsys.readouterr().err
    assert main(["verify", str(tmp_path / "missing.json")]) == 2


def test_junit_lists_every_target():
    results = {"virtual": False, "arena_used_bytes": 2048, "model_bytes": 4096, "complete": True,
               "latency_us": {"median": 2500, "basis": "device m-lap-us stamps"}, "device": {}}
    xml = junit_xml(verify(results))
    assert xml.count("<testcase") == 3 and xml.count("<failure") == 1  # 2.5 ms > 1 ms


def test_cli_virtual_device_and_bench(int8_cnn, tmp_path):
    port_file = tmp_path / "port"
    server = subprocess.Popen([sys.executable, "-m", "tinydeploy", "virtual-device", str(int8_cnn),
                               "--port-file", str(port_file)], stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        assert "virtual device for" in line and port_file.read_text().strip() in line
        done = run_cli("bench", "--port", port_file.read_text().strip(), "--runs", "3", "--out", tmp_path / "b",
                       "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["virtual"] is True
    finally:
        server.terminate()
        server.wait(timeout=10)


PLUGIN_TEST = """
import numpy as np

def test_latency(tinydeploy_device):
    assert tinydeploy_device.bench(runs=5).median_us < 10_000_000

def test_info_and_validate(tinydeploy_device):
    assert tinydeploy_device.info()["virtual"] is True
    x = np.random.default_rng(1).random((4, 32, 32, 1), dtype=np.float32)
    report = tinydeploy_device.validate(x, np.zeros(4, dtype=int))
    assert report["top1_agreement"] == 1.0
"""


def test_pytest_plugin_against_the_virtual_device(pytester, device, int8_cnn):
    _, port = device
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest_subprocess(f"--tinydeploy-port={port}", f"--tinydeploy-model={int8_cnn}",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


FARM_TEST = """
import os

def test_each_worker_has_its_own_board(tinydeploy_device):
    with open(os.path.join({folder!r}, os.environ["PYTEST_XDIST_WORKER"] + ".port"), "w") as f:
        f.write(tinydeploy_device.port)
    assert tinydeploy_device.bench(runs=2).median_us > 0
"""


def test_pytest_plugin_gives_each_xdist_worker_its_own_board(pytester, int8_cnn):
    with VirtualDevice(int8_cnn) as a, VirtualDevice(int8_cnn) as b:
        ports = [a.open_tcp(0), b.open_tcp(0)]
        pytester.makepyfile(FARM_TEST.format(folder=str(pytester.path)))
        result = pytester.runpytest_subprocess("-n", "2", "--dist", "each", *(f"--tinydeploy-port={p}" for p in ports),
                                               f"--tinydeploy-model={int8_cnn}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)  # the test, once on each worker
    assert {path.stem: path.read_text() for path in pytester.path.glob("gw*.port")} == {"gw0": ports[0],
                                                                                       "gw1": ports[1]}


def test_the_farm_fixture_holds_every_board(pytester, int8_cnn):
    with VirtualDevice(int8_cnn) as a, VirtualDevice(int8_cnn) as b:
        farm = pytester.path / "farm.toml"
        farm.write_text(f'[[board]]\nname = "left"\nport = "{a.open_tcp(0)}"\nreset = "none"\n\n'
                        f'[[board]]\nname = "right"\nport = "{b.open_tcp(0)}"\nreset = "none"\n')
        pytester.makepyfile("""
def test_both(tinydeploy_farm):
    assert sorted(tinydeploy_farm) == ["left", "right"]
    assert all(d.bench(runs=2).median_us > 0 for d in tinydeploy_farm.values())
""")
        result = pytester.runpytest_subprocess(f"--tinydeploy-farm={farm}", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


class _Options:
    """The options _open reads from pytest's config."""

    def __init__(self, **options):
        self.options = options

    def getoption(self, name):
        return self.options.get(name)


def test_the_plugin_pulses_reset_only_where_the_farm_says_rts(int8_cnn, monkeypatch):
    from tinydeploy import pytest_plugin
    from tinydeploy.device.farm import FarmBoard
    pulsed = []
    monkeypatch.setattr(Connection, "reset", lambda self: pulsed.append(self.port) or False)
    config = _Options(**{"--tinydeploy-baud": 115200})
    with VirtualDevice(int8_cnn) as vd:
        port = vd.open_tcp(0)
        for reset in ("none", "rts"):
            pytest_plugin._open(FarmBoard(f"board-{reset}", port, reset=reset), config).close()
    assert pulsed == [port]


def test_a_bad_farm_file_is_a_usage_error(tmp_path):
    from tinydeploy import pytest_plugin
    farm = tmp_path / "farm.toml"
    farm.write_text('[[board]]\nname = "a"\nport = "socket://localhost:1"\nreset = "sometimes"\n')
    with pytest.raises(pytest.UsageError, match="reset 'sometimes'"):
        pytest_plugin._boards(_Options(**{"--tinydeploy-farm": str(farm)}))


def test_pytest_plugin_skips_without_a_port(pytester):
    pytester.makepyfile(PLUGIN_TEST)
    result = pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no board: pass --tinydeploy-port*"])


@pytest.mark.unit
def test_instruction_counts_are_never_shown_as_microseconds_without_a_clock():
    from tinydeploy.device.latency import latency_us
    stats = {"runs": 3, "min": 1600, "median": 3200, "mean": 3200, "p90": 4800, "max": 4800}
    assert latency_us(stats, {"timer": "us"}) is stats
    estimate = latency_us({**stats, "partial": True}, {"timer": "instructions", "cpu_mhz": 160})
    assert estimate["median"] == 20 and estimate["partial"] and estimate["basis"].startswith("estimate")
    for bad in (None, 0, -5, "160", True):
        with pytest.raises(StepFailed, match="counts instructions, not µs, but its info gives no clock rate"):
            latency_us(stats, {"timer": "instructions", "cpu_mhz": bad})


# -- bench --power-monitor: a PPK2 stand-in whose current the virtual device's inferences drive ----------

ACTIVE_A, AWAKE_A = 0.046, 0.0317  # computing, and awake between commands (an S3's idle; same PPK2 range)


@pytest.fixture
def ppk2_api():
    return pytest.importorskip("ppk2_api.ppk2_api", reason="pip install 'tinydeploy[power]'")


def test_bench_measures_energy_per_inference_with_a_ppk2_marked_by_each_inference(int8_cnn, tmp_path, ppk2_api):
    from tinydeploy.device.power_standins import DrivenWaveform, Ppk2StandIn
    waveform = DrivenWaveform(ACTIVE_A, AWAKE_A)
    with Ppk2StandIn(waveform) as kit, VirtualDevice(int8_cnn, marker=waveform.mark) as vd:
        port = vd.open_pty()
        assert main(["bench", "--port", port, "--runs", "8", "--warmup", "2", "--power-monitor", f"ppk2:{kit.port}",
                     "--out", str(tmp_path), "--json"]) == 0
        marked = waveform.marked_seconds(since=kit._streamer.started)  # the inferences while it streamed
    saved = json.loads((tmp_path / "results.json").read_text())
    power = saved["power"]
    assert power["basis"] == "measured" and power["monitor"] == f"ppk2 on {kit.port}"
    assert power["inferences"] == power["windows"] == len(marked) == 8  # the timed runs only, one window each
    assert power["sample_rate_hz"] == 100_000 and (kit.voltage_mv, kit.dut_power) == (3300, True)
    # each window within a sample (10 µs) at either edge of the time the device marked, and the
    # current inside them the active current
    assert power["inference_ms"] == pytest.approx(sum(marked) / 8 * 1000, abs=0.02)
    assert power["energy_uj"] == pytest.approx(ACTIVE_A * 3.3 * power["inference_ms"] * 1000, rel=0.005)
    assert power["active_ma"] == pytest.approx(ACTIVE_A * 1000, rel=0.005)
    assert power["idle_ma"] == pytest.approx(AWAKE_A * 1000, rel=0.01)
    # the marked windows are the inferences the device timed (the same invokes, host clock)
    assert power["inference_ms"] == pytest.approx(saved["latency_us"]["mean"] / 1000, rel=0.25)
    recording = np.load(tmp_path / "power.npz")
    assert len(recording["current_a"]) == power["samples"] and recording["marker"].sum() > 0
    # verify judges the measured figure, and labels the average power an estimate built on it
    junit = tmp_path / "energy.xml"
    assert main(["verify", str(tmp_path), "--board", "esp32-s3-devkitc-1", "--max-latency-ms", "1000",
                 "--max-energy-uj", str(round(power["energy_uj"] * 2)), "--max-power-mw", "200",
                 "--junit", str(junit)]) == 0
    assert 'name="energy"></testcase>' in junit.read_text() and 'name="power"></testcase>' in junit.read_text()
    assert main(["verify", str(tmp_path), "--board", "esp32-s3-devkitc-1", "--max-latency-ms", "1000",
                 "--max-energy-uj", str(round(power["energy_uj"] / 2, 1)), "--max-power-mw", "1", "--rate-hz", "5",
                 "--junit", str(junit), "--json"]) == 1
    xml = junit.read_text()
    assert xml.count("<failure") == 2 and "measured (ppk2 on" in xml
    assert "the highest rate within 1 mW is" in xml and "estimate from the measured energy" in xml


def test_a_ppk2_that_stops_mid_run_keeps_its_samples_and_the_timings(int8_cnn, tmp_path, ppk2_api):
    from tinydeploy.device.power import MonitorStopped
    from tinydeploy.device.power_standins import DrivenWaveform, Ppk2StandIn
    waveform = DrivenWaveform(ACTIVE_A, AWAKE_A)
    with Ppk2StandIn(waveform, stop_after=500) as kit, VirtualDevice(int8_cnn, marker=waveform.mark) as vd:
        with pytest.raises(MonitorStopped, match=f"power monitor ppk2 on {kit.port} stopped answering"):
            bench(vd.open_pty(), tmp_path, runs=20, warmup=0, power_monitor=f"ppk2:{kit.port}")
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["latency_us"]["runs"] == 20 and "partial" not in saved["latency_us"]  # the device went on
    power = saved["power"]
    assert power["partial"] and power["samples"] == 500 and "stopped answering" in power["error"]
    assert saved["complete"] is False and "stopped answering" in saved["error"]
    assert len(np.load(tmp_path / "power.npz")["current_a"]) == 500
    verdicts = {v.name: v for v in verify(saved, Targets(max_latency_ms=1000, max_energy_uj=100))}
    assert not verdicts["bench completed"].met and "stopped answering" in verdicts["bench completed"].describe()


@pytest.mark.unit
def test_bad_power_monitor_options_are_refused_before_any_port(tmp_path):
    from tinydeploy import api
    from tinydeploy.core.errors import BadInput
    with pytest.raises(BadInput, match="--power-monitor 'otii:/dev/ttyUSB0': unknown kind 'otii'; accepted: ppk2, "
                                       "lpm01a, joulescope"):
        bench("socket://127.0.0.1:1", tmp_path, power_monitor="otii:/dev/ttyUSB0")
    with pytest.raises(BadInput, match=r"--power-voltage is a supply voltage in volts, 1..5.5, got 12"):
        bench("socket://127.0.0.1:1", tmp_path, power_monitor="ppk2", power_voltage=12)
    with pytest.raises(BadInput, match=r"ppk2: voltage 5.4 V is outside what the kit supplies \(0.8-5.0 V\)"):
        bench("socket://127.0.0.1:1", tmp_path / "out", power_monitor="ppk2", power_voltage=5.4)
    assert not (tmp_path / "out").exists()
    with pytest.raises(BadInput, match="--power-monitor measures one board"):
        api.bench_farm([], tmp_path, power_monitor="ppk2")
    assert main(["bench", "--port", "socket://127.0.0.1:1", "--port", "socket://127.0.0.1:2", "--power-monitor",
                 "ppk2", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "results.json").exists()
