"""tinydeploy under pytest-embedded, Espressif's HIL framework: a real pytest-embedded run
(`--embedded-services serial --port ...`) on the virtual device, where the user's `dut` and
tinydeploy's `tinydeploy_dut` take turns on the one port."""

import os
from pathlib import Path

import pytest

from tinydeploy.core.model import load_model
from tinydeploy.device.virtual_device import VirtualDevice

pytestmark = pytest.mark.host

ROOT = Path(__file__).resolve().parents[1]

# The inner suite, run by pytest-embedded.
SHARED_PORT_TEST = """
import os

import numpy as np
import pytest

from tinydeploy.core.errors import TinyDeployError


def test_the_dut_and_tinydeploy_take_turns_on_the_port(dut, tinydeploy_dut):
    dut.write("name%")
    dut.expect_exact("m-name-dut-[tinydeploy-virtual]", timeout=10)

    info = tinydeploy_dut.info()
    assert info["virtual"] is True and info["model_sha256"] == {sha!r}

    # Who touches the one pyserial port during bench(): pytest-embedded's reader calls
    # read_all(), tinydeploy writes its commands.
    port, touches = dut.serial.proc, []
    read_all, write = port.read_all, port.write
    port.read_all = lambda: touches.append("reader") or read_all()
    port.write = lambda data: touches.append("tinydeploy") or write(data)
    try:
        latency = tinydeploy_dut.bench(runs=20, warmup=1)
    finally:
        del port.read_all, port.write
    assert 0 < latency.min_us <= latency.median_us <= latency.max_us
    assert latency.basis.startswith("virtual")
    first, last = touches.index("tinydeploy"), len(touches) - 1 - touches[::-1].index("tinydeploy")
    assert last - first >= 21 and "reader" not in touches[first:last]  # name%, warmup, 20 runs: the reader paused

    dut.write("info%")  # pytest-embedded's reader has the port again
    dut.expect_exact('"model_sha256":"{sha}"', timeout=10)
    with open(dut.logfile) as f:
        assert "m-lap-us-" not in f.read()  # bench's replies were tinydeploy's alone
    with open(os.path.join(os.path.dirname(dut.logfile), "tinydeploy-serial.log")) as f:
        assert f.read().count(">> infer 1 0%") == 20  # the timed runs, one at a time


def test_the_port_comes_back_when_a_call_fails(dut, tinydeploy_dut):
    x = np.zeros((2, 32, 32, 1), dtype=np.float32)
    report = tinydeploy_dut.validate(x, np.zeros(2, dtype=int))
    assert report["samples"] == 2 and report["top1_agreement"] == 1.0
    with pytest.raises(TinyDeployError):  # samples of the wrong shape, refused while tinydeploy holds the port
        tinydeploy_dut.validate(np.zeros((2, 7), dtype=np.float32), np.zeros(2, dtype=int))
    dut.write("name%")
    dut.expect_exact("m-name-dut-[tinydeploy-virtual]", timeout=10)
"""


@pytest.fixture(autouse=True)
def this_checkout(monkeypatch):
    """The inner runs load this checkout's tinydeploy plugin, not an installed one."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def virtual_port(int8_cnn):
    """The virtual device on a pty, which pytest-embedded opens as it would a board's port."""
    with VirtualDevice(int8_cnn, baud=115200) as device:  # paced like an ESP32's UART
        yield device.open_pty()


def test_tinydeploy_dut_shares_the_port_with_pytest_embedded(pytester, virtual_port, int8_cnn):
    pytester.makepyfile(SHARED_PORT_TEST.format(sha=load_model(int8_cnn).sha256))
    result = pytester.runpytest_subprocess("--embedded-services=serial", f"--port={virtual_port}",
                                           f"--tinydeploy-model={int8_cnn}", f"--root-logdir={pytester.path}",
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_tinydeploy_dut_names_what_to_install_without_pytest_embedded(pytester):
    pytester.makepyfile("def test_board(tinydeploy_dut):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:pytest_embedded", "-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*tinydeploy_dut needs pytest-embedded: pip install pytest-embedded "
                                 "pytest-embedded-serial*"])
