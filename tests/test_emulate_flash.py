"""The emulated board's flash for the model slots: firmware/hal_qemu_virt_slots.c on QEMU's virt
machine (td_slots.h's flash on CFI flash bank 1), and the flash file tinydeploy.device.emulate
gives it (DIR/flash.bin)."""

import hashlib
import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.helpers import missing
from tinydeploy.cli import main
from tinydeploy.core import image
from tinydeploy.core.boards import get_board, parse_board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.resources import shipped
from tinydeploy.device import emulate

BOARD = "qemu-riscv32"
STATE, SLOT_A, SLOT_B = (0x190000, 0x2000), (0x1A0000, 0x10000), (0x1B0000, 0x10000)  # docs/model-update.md's table
SLOTS = {name: {"name": name, "type": "data", "subtype": subtype, "offset": offset, "size": size}
         for name, subtype, (offset, size) in (("td_state", "0x40", STATE), ("model_a", "0x41", SLOT_A),
                                               ("model_b", "0x42", SLOT_B))}
MODEL = bytes(range(256)) * 5


def _header(model: bytes, **changes) -> image.Header:
    values = dict(version="1.0.0", model_sha256=hashlib.sha256(model).hexdigest(), ops=("CONV_2D", "SOFTMAX"),
                  arena={"reference": 9000}, labels=("yes", "no"),
                  input=image.TensorSpec((1, 100, 3), "int8", 0.5, -3),
                  output=image.TensorSpec((1, 2), "int8", 0.00390625, -128))
    values.update(changes)
    return image.Header(**values)


def _contract(**changes) -> dict:
    header = _header(MODEL, **changes)
    return image.firmware_contract("tflm", header.ops, 10_000, "reference", header.input, header.output)


def _project(root: Path, slots: bool = True, contract: dict | None = None) -> Path:
    """A project folder as render writes its tinydeploy.json for the emulated board."""
    root.mkdir(parents=True, exist_ok=True)
    info = {"board": BOARD, "board_profile": str(Path(get_board(BOARD).path).resolve()), "engine": "tflm",
            "framework": "make", "model_sha256": hashlib.sha256(MODEL).hexdigest(), "arena_bytes": 10_000}
    if slots:
        info.update(model_contract=contract or _contract(), model_slots=SLOTS)
    (root / "tinydeploy.json").write_text(json.dumps(info, indent=2))
    return root


def _image(path: Path, **changes) -> Path:
    path.write_bytes(image.pack(_header(MODEL, **changes), MODEL))
    return path


def _part(data: bytes, where: tuple[int, int]) -> bytes:
    offset, size = where
    return data[offset:offset + size]


# ---- the flash file (no emulator) ------------------------------------------------

@pytest.mark.unit
def test_a_model_seeds_slot_a_of_an_erased_flash_and_a_restart_keeps_the_flash(tmp_path):
    project = _project(tmp_path / "fw")
    model = _image(tmp_path / "model.bin")
    flash = emulate.prepare_flash(project, model)
    data = flash.read_bytes()
    assert flash == project / "flash.bin" and len(data) == get_board(BOARD).emulator["flash_bytes"] == 32 << 20
    seeded = model.read_bytes()
    slot_a = _part(data, SLOT_A)
    assert slot_a[:len(seeded)] == seeded and set(slot_a[len(seeded):]) == {0xFF}
    assert set(_part(data, STATE)) == {0xFF} and set(_part(data, SLOT_B)) == {0xFF}  # slot A boots first
    # The firmware writes its state; without --model the next start keeps it.
    with open(flash, "r+b") as f:
        f.seek(STATE[0])
        f.write(b"TDAB")
    assert emulate.prepare_flash(project) == flash and _part(flash.read_bytes(), STATE)[:4] == b"TDAB"
    # With --model the flash is written anew: erased state, the image in slot A.
    emulate.prepare_flash(project, model)
    assert set(_part(flash.read_bytes(), STATE)) == {0xFF}


@pytest.mark.unit
def test_without_a_model_the_flash_is_created_erased(tmp_path):
    project = _project(tmp_path / "fw")
    data = emulate.prepare_flash(project).read_bytes()
    assert all(set(_part(data, where)) == {0xFF} for where in (STATE, SLOT_A, SLOT_B))


@pytest.mark.unit
@pytest.mark.parametrize("change, why", [
    (dict(input=image.TensorSpec((1, 128, 3), "int8", 0.5, -3)),
     "does not fit the firmware: input 1×128×3 ≠ 1×100×3"),
    (dict(ops=("CONV_2D", "MEAN")), "does not fit the firmware: op MEAN not registered"),
    (dict(arena={"reference": 20_000}), "needs 20,000 B of arena, firmware has 10,000"),
], ids=["input", "op", "arena"])
def test_an_image_that_does_not_fit_the_firmware_is_refused_naming_why(tmp_path, change, why):
    project = _project(tmp_path / "fw")
    flash = emulate.prepare_flash(project)
    before = flash.read_bytes()
    with pytest.raises(BadInput, match=why):
        emulate.prepare_flash(project, _image(tmp_path / "other.bin", **change))
    with pytest.raises(BadInput, match=why):  # before looking for the firmware or the emulator
        emulate.start(project, model=tmp_path / "other.bin")
    assert flash.read_bytes() == before  # the flash is left as it was


@pytest.mark.unit
def test_a_corrupt_or_oversized_image_is_refused(tmp_path):
    project = _project(tmp_path / "fw")
    good = _image(tmp_path / "model.bin").read_bytes()
    (tmp_path / "bad.bin").write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(BadInput, match="bad.bin: bad checksum"):
        emulate.prepare_flash(project, tmp_path / "bad.bin")
    big = bytes(SLOT_A[1])  # with its header, more than the slot
    (tmp_path / "big.bin").write_bytes(image.pack(_header(big), big))
    with pytest.raises(BadInput, match="slot A holds 65,536 B; render the project again"):
        emulate.prepare_flash(project, tmp_path / "big.bin")
    with pytest.raises(BadInput, match="no such model image"):
        emulate.prepare_flash(project, tmp_path / "absent.bin")


@pytest.mark.unit
def test_a_model_for_a_project_without_slots_is_refused(tmp_path, capsys):
    project = _project(tmp_path / "fw", slots=False)
    model = _image(tmp_path / "model.bin")
    with pytest.raises(BadInput, match="keeps its model in the application; render it with --model-partition"):
        emulate.start(project, model=model)
    assert emulate.prepare_flash(project) is None and not (project / "flash.bin").exists()
    assert main(["emulate", str(project), "--model", str(model)]) == 2
    assert "--model-partition" in capsys.readouterr().err


@pytest.mark.unit
def test_a_flash_file_of_another_size_is_refused_not_handed_to_qemu(tmp_path):
    project = _project(tmp_path / "fw")
    (project / "flash.bin").write_bytes(b"\xff" * 4096)
    with pytest.raises(BadInput, match="flash.bin is 4,096 bytes, the emulator's flash is 33,554,432"):
        emulate.prepare_flash(project)


@pytest.mark.unit
def test_slots_outside_the_emulators_flash_are_refused(tmp_path):
    project = _project(tmp_path / "fw")
    info = json.loads((project / "tinydeploy.json").read_text())
    info["model_slots"]["model_b"]["offset"] = 32 << 20
    (project / "tinydeploy.json").write_text(json.dumps(info))
    with pytest.raises(BadInput, match="model_slots.model_b .* not a partition inside the emulator's 33,554,432-byte"):
        emulate.prepare_flash(project)


@pytest.mark.unit
@pytest.mark.parametrize("old, new, named", [
    ('flash_bytes = 33554432\n', "", "'emulator.flash_bytes' missing"),
    ("flash_bytes = 33554432", "flash_bytes = 0", "'emulator.flash_bytes' is 0"),
    ("file={flash}", "file={flsh}", "'emulator.flash_args' is"),
    ('slot_sources = ["hal_qemu_virt_slots.c"]', 'slot_sources = ["../x.c"]', "'toolchain.slot_sources' is '../x.c'"),
], ids=["size missing", "size zero", "placeholder", "source path"])
def test_the_profiles_flash_keys_are_checked(old, new, named):
    text = Path(get_board(BOARD).path).read_text()
    assert old in text
    with pytest.raises(BadInput, match=named.replace("[", r"\[").replace("{", r"\{")):
        parse_board(text.replace(old, new), "hostile.toml")


# ---- the firmware's flash on QEMU ------------------------------------------------

PROBE = r"""/* Exercises hal_qemu_virt_slots.c: writes at unaligned offsets, erasing one 4 KB state
 * sector, reading in place, bounds, td_flash_restart; then a boot after the reset. */
#include <stdio.h>
#include <string.h>
#include "td_hal.h"
#include "td_slots.h"

static void say(const char *text) { td_hal_write(text, strlen(text)); }

static void show(const char *label, const uint8_t *p, size_t n) {
  char line[96];
  size_t i, o = (size_t)snprintf(line, sizeof(line), "%s", label);
  for (i = 0; i < n; ++i) o += (size_t)snprintf(line + o, sizeof(line) - o, " %02x", p[i]);
  say(line);
  say("\n");
}

/* QEMU's SiFive test device (hw/misc/sifive_test.h): FINISHER_PASS ends QEMU with code 0, once
 * the UART has sent everything (NS16550A LSR bit 6). */
static void finish(void) {
  while (!(((volatile uint8_t *)0x10000000UL)[5] & 0x40)) {
  }
  *(volatile uint32_t *)0x100000UL = 0x5555;
  for (;;) {
  }
}

void td_main(void) {
  static const uint8_t marker[4] = {'T', 'E', 'S', 'T'};
  static const uint8_t hello[5] = {'h', 'e', 'l', 'l', 'o'};
  static const uint8_t run[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  uint8_t head[5], buf[16], boots;
  char line[96];
  int failed = 0, k;
  td_flash_read(TD_PART_STATE, 0, head, 5);
  if (memcmp(head, marker, 4) == 0) { /* after the reset, or in a later QEMU */
    boots = (uint8_t)(head[4] + 1);
    failed |= td_flash_write(TD_PART_STATE, 4, &boots, 1);
    td_flash_read(TD_PART_B, 0, buf, 16);
    show("slot b", buf, 16);
    snprintf(line, sizeof(line), "boot %u: after reset ok %d\n", (unsigned)boots, failed);
    say(line);
    finish();
  }
  for (k = 0; k < 5 && head[k] == 0xFF; ++k) {
  }
  if (k < 5) {
    show("state not erased:", head, 5);
    finish();
  }
  boots = 1;
  failed |= td_flash_write(TD_PART_STATE, 0, marker, 4);
  failed |= td_flash_write(TD_PART_STATE, 4, &boots, 1);
  failed |= td_flash_write(TD_PART_STATE, TD_SECTOR + 2, "xyz", 3);
  failed |= td_flash_write(TD_PART_B, 5, hello, 5);
  failed |= td_flash_write(TD_PART_B, 11, run, 9);
  failed |= td_flash_write(TD_PART_B, 0x1001, run, 3);
  failed |= td_flash_erase(TD_PART_B, 12, 2);
  failed |= td_flash_erase(TD_PART_STATE, TD_SECTOR, TD_SECTOR);
  td_flash_read(TD_PART_STATE, 0, buf, 8);
  show("state 0", buf, 8);
  td_flash_read(TD_PART_STATE, TD_SECTOR, buf, 8);
  show("state 1", buf, 8);
  td_flash_read(TD_PART_B, 0, buf, 16);
  show("slot b", buf, 16);
  show("mapped b", td_flash_map(TD_PART_B), 16);
  show("mapped b+0x1000", td_flash_map(TD_PART_B) + 0x1000, 4);
  snprintf(line, sizeof(line), "bounds %d %d %d %d %d %d %d size %lu %lu %lu\n",
           td_flash_read(TD_PART_B, 0xffff, buf, 2), td_flash_write(3, 0, buf, 1),
           td_flash_erase(TD_PART_STATE, 0, 0x2001), td_flash_read(-1, 0, buf, 1), td_flash_map(3) == NULL,
           td_flash_read(TD_PART_A, 0xfff0, buf, 16), td_flash_write(TD_PART_A, 0x10000, buf, 0),
           (unsigned long)td_flash_size(TD_PART_STATE), (unsigned long)td_flash_size(TD_PART_A),
           (unsigned long)td_flash_size(7));
  say(line);
  snprintf(line, sizeof(line), "restarting %d\n", failed);
  say(line);
  td_flash_restart();
}
"""

BOARD_H = """#define TD_FLASH_STATE_OFFSET 0x{:x}
#define TD_FLASH_STATE_SIZE 0x{:x}
#define TD_FLASH_MODEL_A_OFFSET 0x{:x}
#define TD_FLASH_MODEL_A_SIZE 0x{:x}
#define TD_FLASH_MODEL_B_OFFSET 0x{:x}
#define TD_FLASH_MODEL_B_SIZE 0x{:x}
""".format(*STATE, *SLOT_A, *SLOT_B)


def _build_probe(project: Path) -> None:
    """The probe, cross-compiled with the board's flags and platform files into project/build."""
    board, firmware = get_board(BOARD), Path(shipped("firmware"))
    tools = board.toolchain
    found = subprocess.run([tools["cc"], *tools["cflags"], "-print-file-name=picolibc.specs"], capture_output=True,
                           text=True).stdout.strip()
    if not Path(found).is_file():
        missing("needs picolibc for the cross compiler (Debian: apt-get install picolibc-riscv64-unknown-elf)")
    (project / "td_board.h").write_text(BOARD_H)
    (project / "probe.c").write_text(PROBE)
    (project / "build").mkdir()
    subprocess.run([tools["cc"], *tools["cflags"], *tools["ldflags"], "-T", str(firmware / tools["linker_script"]),
                    f"-I{project}", f"-I{firmware}", str(project / "probe.c"),
                    *(str(firmware / name) for name in [*tools["sources"], *tools["slot_sources"]]),
                    "-o", str(project / "build" / "firmware.elf")], check=True)


def _boot(project: Path) -> list[str]:
    """Everything the firmware prints in one run of the emulator, until it ends QEMU."""
    received = []
    with emulate.start(project) as emulator:
        host, port = emulator.url.removeprefix("socket://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as uart:
            try:
                while data := uart.recv(4096):
                    received.append(data)
            except TimeoutError:
                pytest.fail(f"the probe went silent; it said {b''.join(received)!r}; log {emulator.log}")
        assert emulator.process.wait(30) == 0, emulator.log.read_text()
    return b"".join(received).decode().splitlines()


@pytest.mark.host
def test_the_firmware_writes_erases_maps_and_keeps_its_flash_across_resets_and_runs(tmp_path, rv32_tools):
    project = _project(tmp_path / "fw")
    _build_probe(project)
    slot_b = "slot b ff ff ff ff ff 68 65 6c 6c 6f ff 01 ff ff 04 05"  # 'hello' at 5, 01.. at 11, 12-13 erased
    assert _boot(project) == [
        "state 0 54 45 53 54 01 ff ff ff",  # the first sector kept its bytes
        "state 1 ff ff ff ff ff ff ff ff",  # the second, erased alone ("xyz" at 2 gone)
        slot_b,
        "mapped " + slot_b.removeprefix("slot "),  # read in place
        "mapped b+0x1000 ff 01 02 03",
        "bounds -1 -1 -1 -1 1 0 0 size 8192 65536 0",
        "restarting 0",
        slot_b,  # the same QEMU, reset by td_flash_restart
        "boot 2: after reset ok 0",
    ]
    assert _boot(project) == [slot_b, "boot 3: after reset ok 0"]  # a new QEMU on the same flash file
    data = (project / "flash.bin").read_bytes()
    assert len(data) == 32 << 20
    state, b = _part(data, STATE), _part(data, SLOT_B)
    assert state[:5] == b"TEST\x03" and set(state[5:]) == {0xFF}
    assert b[:20] == bytes.fromhex("ffffffffff68656c6c6fff01ffff040506070809") and set(b[20:0x1000]) == {0xFF}
    assert b[0x1000:0x1004] == bytes.fromhex("ff010203") and set(b[0x1004:]) == {0xFF}
    assert set(_part(data, SLOT_A)) == {0xFF} and set(data[:STATE[0]]) == {0}  # nothing written outside
