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

With pytest-embedded (``pytest --embedded-services serial --port PORT``), the
``tinydeploy_dut`` fixture is the same session over the ``dut``'s own port, and
``session_for(dut)`` makes one for any DUT. Each call borrows the port from
pytest-embedded's reader and hands it back, so ``dut.expect()`` and ``dut.write()``
work between calls.
"""

from __future__ import annotations

import contextlib
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
    """A connected device: info(), bench() and validate(). It holds its port until close()."""

    def __init__(self, port: str, model: str | None, baud: int, log_dir: Path, reset: bool = True):
        from tinydeploy.device.connection import Connection
        self.port, self.model = port, model
        self.connection = Connection(port, baud, log_dir / "serial.log")
        if reset:  # a farm board with reset = "none" is not pulsed (its RTS line is wired to something else)
            self.connection.reset()
        self.connection.sync()
        self._info = None

    @contextlib.contextmanager
    def _exchange(self):
        """The connection for one call."""
        yield self.connection

    def info(self) -> dict:
        from tinydeploy.device.connection import read_info
        if self._info is None:
            with self._exchange() as connection:
                info = read_info(connection)
                failure = connection.setup_failure(info)
            if failure:
                pytest.fail(failure, pytrace=False)
            self._info = info
        return self._info

    def bench(self, runs: int = 20, warmup: int = 2) -> Latency:
        from tinydeploy.device.latency import latency_us, measure_latency
        info = self.info()
        with self._exchange() as connection:
            stats = latency_us(measure_latency(connection, info, runs, warmup), info)  # emulated: an estimate
        return Latency(stats["min"], stats["median"], stats["mean"], stats["p90"], stats["max"], stats["basis"])

    def validate(self, x, y) -> dict:
        """Run raw labelled samples on the device and compare with the host reference (the TFLM
        interpreter, or TFLite's reference kernels for C-engine firmware)."""
        from tinydeploy.device.validation import validate_on_device
        if self.model is None:
            raise pytest.UsageError("validate() needs --tinydeploy-model (the host reference)")
        info = self.info()
        with self._exchange() as connection:
            return validate_on_device(connection, self.model, x, y, engine=info.get("engine", TFLM),
                                      kernels=info.get("kernels"))

    def close(self) -> None:
        self.connection.close()


class DutSession(DeviceSession):
    """A DeviceSession over a pytest-embedded DUT's serial port (``dut.serial``), borrowed for
    each call: pytest-embedded's reader thread is stopped while tinydeploy talks and started
    again after, so the two never read the port at once. The device is not reset, and what it
    says to tinydeploy goes to log_path, not to the DUT's log."""

    # No DeviceSession.__init__: this session opens no port of its own.
    def __init__(self, serial, model: str | None, log_path: Path):
        self.serial, self.port, self.model, self.log_path = serial, serial.port, model, log_path
        self._info = None

    @contextlib.contextmanager
    def _exchange(self):
        """A connection over the DUT's pyserial port, with pytest-embedded's reader stopped."""
        from tinydeploy.device.connection import Connection
        link = self.serial.proc
        read_timeout = link.timeout
        with self.serial.disable_redirect_thread() as paused:
            try:
                link.timeout = 0.05  # Connection polls; a blocking read would hang it
                with contextlib.closing(Connection(self.port, link.baudrate, self.log_path, link=link)) as connection:
                    connection.sync(boot_wait=0)
                    connection.boot.clear()  # lines before the name reply are the test's leftovers, not a boot
                    yield connection
            finally:
                link.timeout = read_timeout
                if paused:  # disable_redirect_thread() does not restart the reader when the call raised
                    self.serial.start_redirect_thread()

    def close(self) -> None:
        """Nothing to close: the port stays pytest-embedded's."""


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
    _check_model(session, board.name, log_dir / "serial.log")
    return session


def _check_model(session: DeviceSession, name: str, log_path: Path) -> None:
    """Fail the test unless the device runs session.model (when one is given), closing the session."""
    if not session.model:
        return
    from tinydeploy.core.model import load_model
    expected = load_model(session.model).sha256
    actual = session.info().get("model_sha256")
    if actual != expected:
        session.close()
        pytest.fail(f"{name} ({session.port}) runs model {actual}, not {session.model} ({expected}); "
                    f"log: {log_path}", pytrace=False)


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


PYTEST_EMBEDDED_NEEDED = ("tinydeploy_dut needs pytest-embedded: pip install pytest-embedded pytest-embedded-serial, "
                          "then run pytest with --embedded-services serial --port PORT")


def session_for(dut, model: str | None = None) -> DutSession:
    """A tinydeploy session over a pytest-embedded DUT's serial port.

    Args:
        dut: pytest-embedded's ``dut`` (one DUT; with --count N, pass each ``dut[i]``).
        model: the .tflite the board must run, checked by its SHA-256; it is also validate()'s
            host reference.

    Returns:
        A DutSession (info(), bench(), validate()) that borrows the port for each call.
    """
    if isinstance(dut, (list, tuple)):
        pytest.fail(f"session_for takes one DUT, not {len(dut)}: with --count N, call it for each dut[i]",
                    pytrace=False)
    serial = getattr(dut, "serial", None)
    if serial is None or not hasattr(serial, "disable_redirect_thread"):
        pytest.fail(f"this DUT ({type(dut).__name__}) has no serial port: run pytest with "
                    "--embedded-services serial --port PORT", pytrace=False)
    log_path = Path(dut.logfile).parent / "tinydeploy-serial.log"
    session = DutSession(serial, model, log_path)
    _check_model(session, "the DUT", log_path)
    return session


@pytest.fixture
def tinydeploy_dut(request):
    """pytest-embedded's ``dut`` as a tinydeploy session (session_for), checked against
    --tinydeploy-model when it is given."""
    if not request.config.pluginmanager.has_plugin("pytest_embedded"):  # not installed, or -p no:pytest_embedded
        pytest.fail(PYTEST_EMBEDDED_NEEDED, pytrace=False)
    return session_for(request.getfixturevalue("dut"), request.config.getoption("--tinydeploy-model"))
