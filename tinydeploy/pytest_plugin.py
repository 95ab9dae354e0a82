"""pytest plugin for hardware-in-the-loop tests (registered as the `tinydeploy` entry point).

Options: --tinydeploy-port (device path or pyserial URL; repeat it for several boards),
--tinydeploy-farm (a farm file, tinydeploy.device.farm) and --tinydeploy-model (the .tflite the
boards must run). The ``tinydeploy_device`` fixture yields a connected device; without a port
the tests that use it are skipped::

    def test_latency(tinydeploy_device):
        assert tinydeploy_device.bench(runs=50).median_us < 1000

With several boards and pytest-xdist (``-n 2``), each worker takes its own board: worker
gwN gets board N (modulo the number of boards), so tests run on the boards in parallel. The
``tinydeploy_farm`` fixture gives every board at once ({name: device}), for a test that needs
several; run such tests without -n, so that no other worker holds a port.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinydeploy.core.names import TFLM


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

    def __init__(self, port: str, model: str | None, baud: int, log_dir: Path, reset: bool = True):
        from tinydeploy.device.connection import Connection
        self.port, self.model = port, model
        self.connection = Connection(port, baud, log_dir / "serial.log")
        if reset:  # a farm board with reset = "none" is not pulsed (its RTS line is wired to something else)
            self.connection.reset()
        self.connection.sync()
        self._info = None

    def info(self) -> dict:
        from tinydeploy.device.connection import read_info
        if self._info is None:
            info = read_info(self.connection)
            failure = self.connection.setup_failure(info)
            if failure:
                pytest.fail(failure, pytrace=False)
            self._info = info
        return self._info

    def bench(self, runs: int = 20, warmup: int = 2) -> Latency:
        from tinydeploy.device.latency import latency_us, measure_latency
        info = self.info()
        stats = latency_us(measure_latency(self.connection, info, runs, warmup), info)  # emulated: an estimate
        return Latency(stats["min"], stats["median"], stats["mean"], stats["p90"], stats["max"], stats["basis"])

    def validate(self, x, y) -> dict:
        """Run raw labelled samples on the device and compare with the host reference (the TFLM
        interpreter, or TFLite's reference kernels for C-engine firmware)."""
        from tinydeploy.device.validation import validate_on_device
        if self.model is None:
            raise pytest.UsageError("validate() needs --tinydeploy-model (the host reference)")
        info = self.info()
        return validate_on_device(self.connection, self.model, x, y, engine=info.get("engine", TFLM),
                                  kernels=info.get("kernels"))

    def close(self) -> None:
        self.connection.close()


def pytest_addoption(parser):
    group = parser.getgroup("tinydeploy", "hardware-in-the-loop tests with tinydeploy")
    group.addoption("--tinydeploy-port", action="append", default=None,
                    help="the board's serial port or a pyserial URL (repeat it for several boards)")
    group.addoption("--tinydeploy-farm", default=None, help="a farm file of boards (tinydeploy.device.farm)")
    group.addoption("--tinydeploy-model", default=None, help="the .tflite model the board must be running")
    group.addoption("--tinydeploy-baud", default=115200, type=int, help="line rate (default 115200)")


def _boards(config) -> list:
    """The boards of --tinydeploy-farm or --tinydeploy-port (tinydeploy.device.farm.FarmBoard)."""
    from tinydeploy.device import farm
    from tinydeploy.core.errors import BadInput
    farm_file, ports = config.getoption("--tinydeploy-farm"), config.getoption("--tinydeploy-port") or []
    if farm_file and ports:
        raise pytest.UsageError("give --tinydeploy-farm or --tinydeploy-port, not both")
    try:
        return farm.load_farm(farm_file) if farm_file else farm.from_ports(ports)
    except BadInput as exc:  # a bad farm file: say so as a usage error
        raise pytest.UsageError(str(exc)) from exc


def _worker_index(config) -> int:
    """This pytest-xdist worker's number (gw3 -> 3); 0 without xdist."""
    worker = getattr(config, "workerinput", {}).get("workerid", "gw0")
    return int(worker[2:]) if worker[2:].isdigit() else 0


def _open(board, config) -> DeviceSession:
    """A connected session with the board, whose model is checked when --tinydeploy-model is given."""
    model = config.getoption("--tinydeploy-model")
    log_dir = Path(tempfile.mkdtemp(prefix=f"tinydeploy-hil-{board.name}-"))
    session = DeviceSession(board.port, model, config.getoption("--tinydeploy-baud"), log_dir,
                            reset=board.reset == "rts")
    if model:
        from tinydeploy.core.model import load_model
        expected = load_model(model).sha256
        actual = session.info().get("model_sha256")
        if actual != expected:
            session.close()
            pytest.fail(f"{board.name} ({board.port}) runs model {actual}, not {model} ({expected}); log: {log_dir}")
    return session


@pytest.fixture(scope="session")
def tinydeploy_device(request):
    """The board for this test session (with xdist, this worker's board)."""
    boards = _boards(request.config)
    if not boards:
        pytest.skip("no board: pass --tinydeploy-port or --tinydeploy-farm to run hardware-in-the-loop tests")
    session = _open(boards[_worker_index(request.config) % len(boards)], request.config)
    yield session
    session.close()


@pytest.fixture(scope="session")
def tinydeploy_farm(request):
    """Every board at once: {name: DeviceSession}."""
    boards = _boards(request.config)
    if not boards:
        pytest.skip("no boards: pass --tinydeploy-farm or several --tinydeploy-port")
    sessions = {}
    try:
        for board in boards:
            sessions[board.name] = _open(board, request.config)
        yield sessions
    finally:
        for session in sessions.values():
            session.close()
