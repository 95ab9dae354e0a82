"""`tinydeploy emulate`: boot a built firmware on its board's emulator.

The board profile's [emulator] section gives the command (QEMU for
qemu-riscv32). The UART is a TCP server on loopback started with wait=on, so
the emulated CPU does not run, and prints nothing that could be lost, until a
client connects; `tinydeploy bench --port socket://127.0.0.1:PORT` is that
client. QEMU's own messages go to DIR/emulator.log.

A firmware rendered with --model-partition keeps its model slots in flash: the
emulator gets a flash file, DIR/flash.bin, as the board profile's
[emulator] flash_bytes and flash_args say. The file outlives the emulator, as a
board's flash outlives a reset; `start(..., model=IMAGE)` writes it anew, erased,
with the image in slot A, as a board freshly flashed with its first model.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tinydeploy.codegen import partitions
from tinydeploy.core import image
from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.manifest import read_project

READY_TIMEOUT = 20.0  # seconds for the emulator to open its serial port
FLASH_FILE = "flash.bin"
ERASED = b"\xff"  # NOR flash reads all ones when erased
SLOT_PARTITIONS = ("td_state", *partitions.SLOT_NAMES.values())  # model_slots' keys in tinydeploy.json


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
    flash: Path | None = None  # the flash file of a firmware with model slots

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


@dataclass(frozen=True)
class _FlashPlan:
    path: Path
    size: int
    slots: dict[str, tuple[int, int]]  # partition name -> (offset, size)
    seed: bytes | None  # a model image for slot A: the file is written anew


def _flash_plan(root: Path, board, model: str | Path | None) -> _FlashPlan | None:
    """What the project's flash file must be (None: the firmware keeps no model slots), checked
    before anything is written."""
    info = read_project(root)
    recorded = info.get("model_slots")
    if not recorded:
        if model is not None:
            raise BadInput(f"--model {model}: {root} keeps its model in the application; render it with "
                           "--model-partition to boot it with a model image in a flash slot")
        return None
    emulator = board.emulator
    if "flash_args" not in emulator:
        raise BadInput(f"{root} keeps its model in flash slots, but the {board.name} profile ({board.path}) gives its "
                       "emulator no flash: add [emulator] flash_bytes and flash_args")
    size = emulator["flash_bytes"]
    slots = {}
    for name in SLOT_PARTITIONS:
        part = recorded.get(name) if isinstance(recorded, dict) else None
        offset, length = (part.get("offset"), part.get("size")) if isinstance(part, dict) else (None, None)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (offset, length)) or not (
                0 <= offset and 0 < length and offset + length <= size):
            raise BadInput(f"{root / 'tinydeploy.json'}: model_slots.{name} is {part!r}, not a partition inside the "
                           f"emulator's {size:,}-byte flash; render the project again")
        slots[name] = (offset, length)
    seed = None
    if model is not None:
        path = Path(model)
        seed, parsed = image.load(path, "--model")
        contract = info.get("model_contract")
        if not isinstance(contract, dict):
            raise BadInput(f"{root / 'tinydeploy.json'} has no model_contract to check {path} against; render the "
                           "project again")
        image.check_fits(parsed.header, contract, str(path))
        room = slots["model_a"][1]
        if len(seed) > room:
            raise BadInput(f"{path}: {len(seed):,} B, slot A holds {room:,} B; render the project again for this model "
                           "(its slots are sized for the model it was rendered with)")
    return _FlashPlan(root / FLASH_FILE, size, slots, seed)


def _write_flash(plan: _FlashPlan) -> None:
    """Seed the flash file (erased partitions, the image in slot A), or create it erased, or keep it."""
    if plan.seed is None and plan.path.exists():
        found = plan.path.stat().st_size
        if found != plan.size:  # QEMU refuses a backing file of another size than the bank
            raise BadInput(f"{plan.path} is {found:,} bytes, the emulator's flash is {plan.size:,}: delete it, or "
                           "start with --model IMAGE to write a new one")
        return
    handle, temporary = tempfile.mkstemp(prefix=FLASH_FILE, dir=plan.path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.truncate(plan.size)  # sparse; the bytes outside the partitions read as zeros, unused
            for offset, length in plan.slots.values():
                out.seek(offset)
                out.write(ERASED * length)
            if plan.seed is not None:
                out.seek(plan.slots["model_a"][0])
                out.write(plan.seed)
        os.replace(temporary, plan.path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def prepare_flash(project_dir: str | Path, model: str | Path | None = None) -> Path | None:
    """The flash file of a project whose firmware keeps its model in flash slots, as start gives it
    to the emulator.

    Args:
        project_dir: a project rendered for an emulated board.
        model: a model image (`tinydeploy package`) to boot with: the file is written anew, its
            partitions erased and the image in slot A (model_a), the state partition erased (the
            firmware then boots slot A). None keeps an existing file, or creates an erased one.

    Returns:
        The file's path, or None when the firmware keeps its model in the application.

    Raises:
        BadInput: a model for a project without slots, a bad image or one that does not fit the
            firmware's contract, a board profile without flash, or a flash file of the wrong size.
    """
    root = Path(project_dir)
    plan = _flash_plan(root, _board_of(root), model)
    if plan is not None:
        _write_flash(plan)
    return plan.path if plan else None


def _qemu_value(path: Path) -> str:
    """A path inside a QEMU option value, where a comma separates options and ",," is a comma."""
    return str(path).replace(",", ",,")


def start(project_dir: str | Path, tcp_port: int = 0, model: str | Path | None = None) -> Emulator:
    """Start the emulator on a built project, its UART on a loopback TCP port.

    Args:
        project_dir: a project rendered for an emulated board and built.
        tcp_port: the port to listen on (0: any free port).
        model: for a firmware with model slots (render --model-partition), a model image to boot
            with (see prepare_flash); None boots with the flash as the last run left it.

    Returns:
        The running emulator; its url is the pyserial port for bench.

    Raises:
        BadInput: not a built project for an emulated board, a bad port, or a bad model image
            or flash (see prepare_flash).
        StepFailed: the emulator is not installed or did not start.
    """
    check("--tcp", tcp_port)
    root = Path(project_dir)
    board = _board_of(root)
    plan = _flash_plan(root, board, model)
    elf = root / "build" / "firmware.elf"
    if not elf.is_file():
        raise BadInput(f"{elf} does not exist: run `tinydeploy build {root}` first")
    emulator = board.emulator
    executable = emulator["command"][0]
    if not shutil.which(executable):
        raise StepFailed(f"{executable} is not installed: apt-get install {' '.join(emulator['packages'])}")
    if plan is None:
        boot = ["-kernel", str(elf)]
    else:
        _write_flash(plan)
        boot = [arg.replace("{flash}", _qemu_value(plan.path)).replace("{firmware}", _qemu_value(elf))
                for arg in emulator["flash_args"]]
    port = tcp_port or _free_port()
    command = list(emulator["command"]) + ["-serial", f"tcp:127.0.0.1:{port},server=on,wait=on", *boot]
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
            return Emulator(process, f"socket://127.0.0.1:{port}", log, command, plan.path if plan else None)
        time.sleep(0.05)
    process.kill()
    raise StepFailed(f"the emulator did not open its serial port within {READY_TIMEOUT:g} s; log {log}")
