"""pytest plugin for hardware-in-the-loop tests (registered as the `tinydeploy` entry point).

Options: --tinydeploy-port (device path or pyserial URL) and --tinydeploy-model
(the .tflite the board must run). The ``tinydeploy_device`` fixture yields a
connected device; without a port the tests that use it are skipped::

    def test_latency(tinydeploy_device):
        assert tinydeploy_device.bench(runs=50).median_us < 1000
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Latency:
    min_us: float
    median_us: float
    mean_us: float
    p90_us: float
    max_us: float
    basis: str


class DeviceSession:
    """A connected device: info(), bench() and validate()."""

    def __init__(self, port: str, model: str | None, baud: int, log_dir: Path):
        from tinydeploy.bench import Connection
        self.port, self.model = port, model
        self.connection = Connection(port, baud, log_dir / "serial.log")
        self.connection.reset()
        self.connection.sync()
        self._info = None

    def info(self) -> dict:
        from tinydeploy.bench import read_info
        if self._info is None:
            info = read_info(self.connection)
            failure = self.connection.setup_failure(info)
            if failure:
                pytest.fail(failure, pytrace=False)
            self._info = info
        return self._info

    def bench(self, runs: int = 20, warmup: int = 2) -> Latency:
        from tinydeploy.bench import latency_us, measure_latency
        info = self.info()
        stats = latency_us(measure_latency(self.connection, info, runs, warmup), info)  # emulated: an estimate
        return Latency(stats["min"], stats["median"], stats["mean"], stats["p90"], stats["max"], stats["basis"])

    def validate(self, x, y) -> dict:
        """Run raw labelled samples on the device and compare with the host reference (the TFLM
        interpreter, or TFLite's reference kernels for C-engine firmware)."""
        from tinydeploy.bench import validate_on_device
        if self.model is None:
            raise pytest.UsageError("validate() needs --tinydeploy-model (the host reference)")
        info = self.info()
        return validate_on_device(self.connection, self.model, x, y, engine=info.get("engine", "tflm"),
                                  kernels=info.get("kernels"))

    def close(self) -> None:
        self.connection.close()


def pytest_addoption(parser):
    group = parser.getgroup("tinydeploy", "hardware-in-the-loop tests with tinydeploy")
    group.addoption("--tinydeploy-port", default=None, help="the board's serial port or a pyserial URL")
    group.addoption("--tinydeploy-model", default=None, help="the .tflite model the board must be running")
    group.addoption("--tinydeploy-baud", default=115200, type=int, help="line rate (default 115200)")


@pytest.fixture(scope="session")
def tinydeploy_device(request):
    port = request.config.getoption("--tinydeploy-port")
    if not port:
        pytest.skip("no board: pass --tinydeploy-port to run hardware-in-the-loop tests")
    model = request.config.getoption("--tinydeploy-model")
    log_dir = Path(tempfile.mkdtemp(prefix="tinydeploy-hil-"))
    session = DeviceSession(port, model, request.config.getoption("--tinydeploy-baud"), log_dir)
    if model:
        from tinydeploy.model import load_model
        expected = load_model(model).sha256
        actual = session.info().get("model_sha256")
        if actual != expected:
            session.close()
            pytest.fail(f"the device runs model {actual}, not {model} ({expected}); log: {log_dir}")
    yield session
    session.close()
