"""`tinydeploy flash DIR --model model.bin`: a model image into the inactive slot of a firmware
rendered with --model-partition, with esptool, at the offsets of the project's partition table;
then a new A/B state record that marks the slot to try (docs/model-update.md).

`--dry-run` stops after the checks: the image is valid, it fits the firmware's contract
(tinydeploy.json's model_contract), and where it would go.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Callable

from tinydeploy.codegen import partitions
from tinydeploy.core import image
from tinydeploy.core.boards import load_boards
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.manifest import read_project, rendered_board
from tinydeploy.toolchain.build import run_logged
from tinydeploy.toolchain.flash import choose_port, explain_upload_failure


def plan(project_dir: str | Path, image_path: str | Path) -> dict:
    """Check an image against a project and find its slots.

    Returns:
        {"image": header dict, "slots": {"a"|"b"|"state": {"name", "offset", "size"}}, "bytes"}.

    Raises:
        BadInput: not a --model-partition project, a table that disagrees with tinydeploy.json,
            a bad image, or one that does not fit the firmware (every reason named).
    """
    root = Path(project_dir)
    info = read_project(root)
    contract, recorded = info.get("model_contract"), info.get("model_slots")
    if not recorded or not contract:
        raise BadInput(f"{root} keeps its model in the application: render it with --model-partition to update "
                       "models without reflashing it")
    table = root / partitions.FILE
    if not table.is_file():
        raise BadInput(f"{table}: missing; render the project again")
    found = partitions.slots(partitions.read_csv(table.read_text(encoding="utf-8"), str(table)), str(table))
    for part in found.values():
        listed = recorded.get(part.name) or {}
        if listed.get("offset") != part.offset or listed.get("size") != part.size:
            raise BadInput(f"{table}: {part.name} at 0x{part.offset:x} (0x{part.size:x} B) is not where "
                           f"{root / 'tinydeploy.json'} has it; render the project again")
    path = Path(image_path)
    data, parsed = image.load(path)
    image.check_fits(parsed.header, contract, str(path))
    room = found["a"].size
    if len(data) > room:
        raise BadInput(f"{path}: {len(data):,} B, the slots hold {room:,} B; render the project again for this "
                       "model (its slots are sized for the model it was rendered with)")
    return {"image": parsed.header.to_dict(), "bytes": len(data),
            "slots": {key: {"name": p.name, "offset": p.offset, "size": p.size} for key, p in found.items()}}


def _esptool(chip: str, port: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, *args]


def flash_model(project_dir: str | Path, image_path: str | Path, port: str | None = None,
                on_line: Callable[[str], None] | None = None, dry_run: bool = False) -> dict:
    """Write the image to the inactive slot and mark it to try.

    The state partition is read first (esptool read-flash), to know which slot runs; the new
    state record goes to the state sector that does not hold the current one, so a write cut
    short leaves the current state standing.

    Returns:
        plan()'s dict, with "slot" (written), "state_offset" and "log" (None with dry_run).
    """
    planned = plan(project_dir, image_path)
    if dry_run:
        return {**planned, "slot": None, "log": None}
    root = Path(project_dir)
    board = rendered_board(root)
    if board is None or not board.esptool_chip:
        raise BadInput(f"{root}: rendered for a board that is not flashed with esptool; boards that are: "
                       f"{', '.join(b.name for b in load_boards().values() if b.esptool_chip)}")
    port = choose_port(port)
    log = root / "flash-model.log"
    state_part = planned["slots"]["state"]
    with tempfile.TemporaryDirectory(prefix="tinydeploy-state-") as folder:
        state_file = Path(folder) / "state.bin"
        command = _esptool(board.esptool_chip, port, "read-flash", hex(state_part["offset"]),
                           hex(state_part["size"]), str(state_file))
        code, lines = run_logged(command, log, on_line)
        if code != 0 or not state_file.is_file():
            raise StepFailed(explain_upload_failure(lines, code, port, log))
        raw = state_file.read_bytes()
        state, sector = image.current_state([raw[i * partitions.SECTOR:][:image.STATE_BYTES] for i in range(2)])
        running = state.active if state else "a"
        target = "b" if running == "a" else "a"
        new = (state or image.SlotState(0, running, False, running)).next(target, True, running)
        record = Path(folder) / "record.bin"
        record.write_bytes(image.pack_state(new).ljust(partitions.SECTOR, b"\xff"))
        slot_offset = planned["slots"][target]["offset"]
        state_offset = state_part["offset"] + sector * partitions.SECTOR
        command = _esptool(board.esptool_chip, port, "write-flash", hex(slot_offset), str(image_path),
                           hex(state_offset), str(record))
        code, more = run_logged(command, log.with_suffix(".write.log"), on_line)
        if code != 0:
            raise StepFailed(explain_upload_failure(more, code, port, log.with_suffix(".write.log")))
    return {**planned, "slot": target, "slot_offset": slot_offset, "state_offset": state_offset,
            "running_before": running, "log": str(log)}
