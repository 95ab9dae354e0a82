"""`tinydeploy emulate`: boot a built firmware on its board's emulator.

The board profile's [emulator] section gives the command (QEMU for
qemu-riscv32). The UART is a TCP server on loopback started with wait=on, so
the emulated CPU does not run, and prints nothing that could be lost, until a
client connects; `tinydeploy bench --port socket://127.0.0.1:PORT` is that
client. QEMU's own messages go to DIR/emulator.log.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput, StepFailed

READY_TIMEOUT = 20.0  # seconds for the emulator to open its serial port


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Emulator:
    process: subprocess.Popen
    url: str
    log: Path
    command: list[str]

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Emulator":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _board_of(root: Path):
    from tinydeploy.core.manifest import rendered_board
    board = rendered_board(root)
    if board is None:
        raise BadInput(f"{root} is not a rendered project (no readable tinydeploy.json); "
                       "run `tinydeploy render` and `tinydeploy build` first")
    if not board.emulated:
        raise BadInput(f"{board.name} is a real board, not an emulated one: flash it with `tinydeploy flash`")
    return board


def start(project_dir: str | Path, tcp_port: int = 0) -> Emulator:
    """Start the emulator on a built project, its UART on a loopback TCP port.

    Args:
        project_dir: a project rendered for an emulated board and built.
        tcp_port: the port to listen on (0: any free port).

    Returns:
        The running emulator; its url is the pyserial port for bench.

    Raises:
        BadInput: not a built project for an emulated board, or a bad port.
        StepFailed: the emulator is not installed or did not start.
    """
    check("--tcp", tcp_port)
    root = Path(project_dir)
    board = _board_of(root)
    elf = root / "build" / "firmware.elf"
    if not elf.is_file():
        raise BadInput(f"{elf} does not exist: run `tinydeploy build {root}` first")
    emulator = board.emulator
    executable = emulator["command"][0]
    if not shutil.which(executable):
        raise StepFailed(f"{executable} is not installed: apt-get install {' '.join(emulator['packages'])}")
    port = tcp_port or _free_port()
    command = list(emulator["command"]) + ["-serial", f"tcp:127.0.0.1:{port},server=on,wait=on",
                                           "-kernel", str(elf)]
    log = root / "emulator.log"
    handle = open(log, "w", encoding="utf-8")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:  # QEMU says when it waits for the connection
        if process.poll() is not None:
            raise StepFailed(f"the emulator exited at once (code {process.returncode}): "
                             f"{log.read_text(errors='replace').strip()[-400:]}")
        if "waiting for connection" in log.read_text(errors="replace"):
            return Emulator(process, f"socket://127.0.0.1:{port}", log, command)
        time.sleep(0.05)
    process.kill()
    raise StepFailed(f"the emulator did not open its serial port within {READY_TIMEOUT:g} s; log {log}")
