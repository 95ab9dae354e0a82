"""The device side of model slots (docs/model-update.md): which slot boots, the boot check, the
serial upload into the inactive slot, and rollback. The virtual device runs it on a folder that
stands for the flash (one file per partition); firmware/td_slots.c is its C twin.

Boot: the state (tinydeploy.core.image.SlotState) names the active slot. Its image must pass
the check (magic, format, CRC, sha256, and the firmware's contract); a slot on trial that fails
it is marked bad and the last good slot boots instead, with the reason printed over serial. A
slot on trial that passes runs, and its first successful inference makes it the last good one;
a failed first inference rolls back too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tinydeploy.core import image
from tinydeploy.core.errors import BadInput
from tinydeploy.codegen import partitions

ERASED = 0xFF
MAX_CHUNK = 1024  # TD_MAX_CHUNK: the largest `model chunk` the device takes (a UART's 4 KB buffer holds it)


class FileFlash:
    """Flash partitions as files in a folder (td_state.bin, model_a.bin, model_b.bin), erased to
    0xFF, written only where erased: what the virtual device keeps across resets."""

    def __init__(self, folder: str | Path, slot_bytes: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.sizes = {"td_state": partitions.STATE_BYTES, "model_a": slot_bytes, "model_b": slot_bytes}
        for name, size in self.sizes.items():
            path = self._path(name)
            if not path.exists() or path.stat().st_size != size:
                path.write_bytes(bytes([ERASED]) * size)

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.bin"

    def read(self, name: str, offset: int, count: int) -> bytes:
        with open(self._path(name), "rb") as handle:
            handle.seek(offset)
            return handle.read(count)

    def erase(self, name: str, offset: int, count: int) -> None:
        with open(self._path(name), "r+b") as handle:
            handle.seek(offset)
            handle.write(bytes([ERASED]) * count)

    def write(self, name: str, offset: int, data: bytes) -> None:
        old = self.read(name, offset, len(data))
        if any(b != ERASED for b in old):  # NOR flash: writing only clears bits
            data = bytes(a & b for a, b in zip(old, data))
        with open(self._path(name), "r+b") as handle:
            handle.seek(offset)
            handle.write(data)
            handle.flush()


def _slot(name: str) -> str:
    return partitions.SLOT_NAMES[name]


def other(slot: str) -> str:
    return "b" if slot == "a" else "a"


def read_state(flash: FileFlash) -> tuple[image.SlotState | None, int]:
    sectors = [flash.read("td_state", i * partitions.SECTOR, image.STATE_BYTES) for i in range(2)]
    return image.current_state(sectors)


def write_state(flash: FileFlash, state: image.SlotState) -> None:
    _, sector = read_state(flash)
    flash.erase("td_state", sector * partitions.SECTOR, partitions.SECTOR)
    flash.write("td_state", sector * partitions.SECTOR, image.pack_state(state))


def check_slot(flash: FileFlash, slot: str, contract: dict) -> image.Image:
    """The slot's image, checked as the firmware checks it at boot.

    Raises:
        BadInput: why the slot cannot run (empty, corrupt, newer format, does not fit the firmware).
    """
    name = _slot(slot)
    head = flash.read(name, 0, image.FIXED.size)
    if all(b == ERASED for b in head[:8]):
        raise BadInput(f"slot {slot} is empty")
    header, _, image_bytes = image.read_header(flash.read(name, 0, min(flash.sizes[name], 0x10000)), f"slot {slot}")
    if image_bytes > flash.sizes[name]:
        raise BadInput(f"slot {slot}: the image's {image_bytes:,} B exceed the slot's {flash.sizes[name]:,}")
    parsed = image.parse(flash.read(name, 0, image_bytes), f"slot {slot}")
    image.check_fits(parsed.header, contract, f"slot {slot}", device=True)
    return parsed


@dataclass
class Booted:
    slot: str
    image: image.Image
    trial: bool
    messages: list[str]  # why a slot was refused, for the serial line (e-[...])


def boot(flash: FileFlash, contract: dict) -> Booted:
    """Choose and check the slot to run, rolling back from a bad one (writing the new state).

    Raises:
        BadInput: neither slot holds a model this firmware can run (both reasons given).
    """
    state, _ = read_state(flash)
    order = [state.active, other(state.active)] if state else ["a", "b"]
    if state and state.last_good and state.last_good != state.active:
        order = [state.active, state.last_good]
    messages, reasons = [], []
    for slot in order:
        try:
            checked = check_slot(flash, slot, contract)
        except BadInput as exc:
            reasons.append(str(exc))
            continue
        trial = bool(state and state.trial and slot == state.active)
        if reasons:
            messages.append(f"{reasons[0]}; running slot {slot}")
            new = (state or image.SlotState(0, slot, False, slot)).next(slot, False, slot)
            write_state(flash, new)
        elif state is None:
            write_state(flash, image.SlotState(1, slot, False, slot))
        return Booted(slot, checked, trial, messages)
    raise BadInput("no model can run: " + "; ".join(reasons))


def proven(flash: FileFlash, booted: Booted) -> None:
    """The first inference on a slot on trial succeeded: it becomes the last good one."""
    state, _ = read_state(flash)
    if booted.trial and state is not None:
        write_state(flash, state.next(booted.slot, False, booted.slot))
        booted.trial = False


def failed_first(flash: FileFlash, booted: Booted) -> str | None:
    """The first inference on a slot on trial failed: go back to the last good slot at the next
    boot. Returns the message, or None when the slot was not on trial."""
    state, _ = read_state(flash)
    if not booted.trial or state is None or not state.last_good or state.last_good == booted.slot:
        return None
    write_state(flash, state.next(state.last_good, False, state.last_good))
    return f"slot {booted.slot} failed its first inference; rolled back to slot {state.last_good}"


class Upload:
    """One serial upload into the inactive slot: begin, chunks with CRC-32, commit."""

    def __init__(self, flash: FileFlash, running: str, contract: dict):
        self.flash, self.running, self.contract = flash, running, contract
        self.target = other(running)
        self.expected = 0
        self.received = 0

    def begin(self, size: int) -> str:
        name = _slot(self.target)
        if size <= 0 or size > self.flash.sizes[name]:
            raise BadInput(f"model begin {size}: slot {self.target} holds 1 to {self.flash.sizes[name]} bytes")
        self.flash.erase(name, 0, self.flash.sizes[name])
        self.expected, self.received = size, 0
        return self.target

    def chunk(self, data: bytes, crc: int) -> int:
        if self.expected == 0:
            raise BadInput("model chunk before model begin N")
        actual = image.crc32(data)
        if actual != crc:
            raise BadInput(f"chunk crc32 {actual:08x} != {crc:08x} at byte {self.received}: send it again")
        if self.received + len(data) > self.expected:
            raise BadInput(f"chunk ends past the {self.expected} bytes announced")
        self.flash.write(_slot(self.target), self.received, data)
        self.received += len(data)
        return self.received

    def commit(self) -> image.Image:
        """Check the uploaded image as the boot check will, then mark its slot to try.

        Raises:
            BadInput: incomplete, or the image fails its check (the state is left as it was).
        """
        if self.expected == 0 or self.received != self.expected:
            raise BadInput(f"model commit: {self.received} of {self.expected} bytes received")
        try:
            checked = check_slot(self.flash, self.target, self.contract)
        except BadInput as exc:
            raise BadInput(f"model refused, slot {self.running} keeps running: {exc}") from None
        state, _ = read_state(self.flash)
        base = state or image.SlotState(0, self.running, False, self.running)
        write_state(self.flash, base.next(self.target, True, self.running))
        self.expected = 0
        return checked
