"""Model versioning (docs/model-update.md): model images, the compatibility contract, the A/B
slots with their boot check and rollback, the serial upload, and flash --model's offsets."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.codegen import package, partitions
from tinydeploy.core import image
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.model import load_model
from tinydeploy.device import slots
from tinydeploy.device.connection import Connection, load_input, read_info
from tinydeploy.device.model_upload import upload_model
from tinydeploy.device.virtual_device import VirtualDevice
from tests.helpers import run_cli


# -- the image format (unit: no model needed, the header does not parse the model) ----------

def _header(model: bytes, **changes) -> image.Header:
    import hashlib
    values = dict(version="1.2.0", model_sha256=hashlib.sha256(model).hexdigest(), ops=("CONV_2D", "SOFTMAX"),
                  arena={"reference": 9000, "esp-nn": 9100}, labels=("yes", "no"),
                  input=image.TensorSpec((1, 100, 3), "int8", 0.5, -3),
                  output=image.TensorSpec((1, 2), "int8", 0.00390625, -128))
    values.update(changes)
    return image.Header(**values)


MODEL = bytes(range(256)) * 3


@pytest.mark.unit
def test_an_image_round_trips_its_header_and_model_with_the_model_16_byte_aligned():
    data = image.pack(_header(MODEL), MODEL)
    parsed = image.parse(data)
    assert parsed.model == MODEL and parsed.header_bytes % 16 == 0
    assert parsed.header.version == "1.2.0" and parsed.header.ops == ("CONV_2D", "SOFTMAX")
    assert parsed.header.arena == {"reference": 9000, "esp-nn": 9100} and parsed.header.labels == ("yes", "no")
    assert parsed.header.input.shape == (1, 100, 3) and parsed.header.input.zero_point == -3
    assert data[:8] == b"TDMODEL\0" and struct.unpack_from("<H", data, 8)[0] == image.FORMAT_VERSION


def _newer(data: bytes) -> bytes:
    changed = bytearray(data)
    struct.pack_into("<H", changed, 8, image.FORMAT_VERSION + 1)
    struct.pack_into("<I", changed, image.CRC_OFFSET, 0)
    struct.pack_into("<I", changed, image.CRC_OFFSET, image.crc32(bytes(changed)))  # a valid image otherwise
    return bytes(changed)


@pytest.mark.unit
@pytest.mark.parametrize("fault, expected", [
    (lambda d: b"NOTMODEL" + d[8:], "bad magic"),
    (_newer, "made by a newer tinydeploy"),
    (lambda d: d[:-1] + bytes([d[-1] ^ 0x01]), "bad checksum"),  # one bit of the model flipped
    (lambda d: d[:len(d) // 2], "truncated"),
    (lambda d: d[:100], "truncated"),
    (lambda d: d + b"\0", "after the image's end"),
])
def test_a_damaged_image_is_refused_naming_the_fault(fault, expected):
    with pytest.raises(BadInput, match=expected):
        image.parse(fault(image.pack(_header(MODEL), MODEL)))


@pytest.mark.unit
def test_the_contract_names_every_reason_an_image_does_not_fit():
    contract = image.firmware_contract("tflm", ["CONV_2D", "SOFTMAX"], 18432, "esp-nn",
                                       image.TensorSpec((1, 100, 3), "int8", 0.5, -3),
                                       image.TensorSpec((1, 2), "int8", 0.00390625, -128))
    assert image.problems(_header(MODEL), contract) == []
    bad = _header(MODEL, ops=("CONV_2D", "MEAN", "SOFTMAX"), arena={"esp-nn": 21400},
                  input=image.TensorSpec((1, 128, 3), "int8", 0.5, -3))
    assert image.problems(bad, contract) == ["op MEAN not registered", "needs 21,400 B of arena, firmware has 18,432",
                                             "input 1×128×3 ≠ 1×100×3"]
    plan = {**contract, "plan_sha256": "ab" * 32}
    assert any("plan" in p for p in image.problems(_header(MODEL, plan_sha256="cd" * 32), plan))


@pytest.mark.unit
def test_format_2_carries_c_engine_constants_after_the_model_and_format_1_images_still_read():
    constants = bytes(range(48))
    data = image.pack(_header(MODEL), MODEL, constants)
    parsed = image.parse(data)
    assert parsed.model == MODEL and parsed.constants == constants and parsed.header.c_constants_bytes == 48
    assert len(data) == image.constants_offset(parsed.header_bytes, len(MODEL)) + 48 and parsed.size == len(data)
    assert (image.constants_offset(parsed.header_bytes, len(MODEL)) % 16, parsed.header_bytes % 16) == (0, 0)
    old = image.parse(image.pack(_header(MODEL, format_version=1), MODEL))
    assert old.header.format_version == 1 and old.constants == b"" and old.model == MODEL
    with pytest.raises(BadInput, match="image format 1 holds no C engine constants"):
        image.pack(_header(MODEL, format_version=1), MODEL, constants)
    # a C-engine firmware takes only an image with constants for its plan
    plan = "ab" * 32
    contract = image.firmware_contract("c", ["CONV_2D", "SOFTMAX"], 18432, None,
                                       image.TensorSpec((1, 100, 3), "int8", 0.5, -3),
                                       image.TensorSpec((1, 2), "int8", 0.00390625, -128), plan)
    with_plan = _header(MODEL, plan_sha256=plan, c_arena_bytes=9000)
    assert image.problems(image.parse(image.pack(with_plan, MODEL, constants)).header, contract) == []
    assert image.problems(image.parse(image.pack(with_plan, MODEL)).header, contract) == [
        "the image holds no C engine constants (image format 2 does: package the model again)"]


@pytest.mark.unit
@pytest.mark.parametrize("version", ["1.2", "v1.2.0", "1.2.0.4", "01.2.0", "1.2.0-" + "x" * 30, ""])
def test_a_version_that_is_not_semver_is_refused(version):
    with pytest.raises(BadInput, match="semantic version"):
        image.check_version(version)


@pytest.mark.unit
def test_the_state_record_with_the_higher_sequence_holds_and_a_torn_one_is_ignored():
    old = image.pack_state(image.SlotState(4, "a", False, "a"))
    new = image.pack_state(image.SlotState(5, "b", True, "a"))
    assert image.current_state([old, new]) == (image.SlotState(5, "b", True, "a"), 0)
    torn = new[:10] + b"\xff" * 10  # a write cut short by a reset
    assert image.current_state([old, torn]) == (image.SlotState(4, "a", False, "a"), 1)
    assert image.current_state([b"\xff" * 20, b"\xff" * 20]) == (None, 0)


# -- the partition table ----------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("flash_kb, model_bytes", [(4096, 5_000), (4096, 300_000), (8192, 1_000_000)])
def test_the_partition_table_keeps_the_flash_alignment_rules(flash_kb, model_bytes):
    parts = partitions.layout(flash_kb, model_bytes)
    found = partitions.slots(partitions.read_csv(partitions.csv(parts, "test")))
    for key in ("a", "b"):
        assert found[key].offset % 0x10000 == 0 and found[key].size % 0x10000 == 0  # mmap: whole MMU pages
        assert found[key].size >= 2 * model_bytes
    assert found["state"].offset % 0x1000 == 0 and found["state"].size == 2 * 0x1000
    ordered = sorted(parts, key=lambda p: p.offset)
    assert all(a.offset + a.size <= b.offset for a, b in zip(ordered, ordered[1:]))
    assert ordered[-1].offset + ordered[-1].size <= flash_kb * 1024
    assert next(p for p in parts if p.type == "app").offset % 0x10000 == 0


@pytest.mark.unit
def test_a_model_too_large_for_two_slots_is_refused():
    with pytest.raises(BadInput, match="too large for two slots"):
        partitions.layout(4096, 2_000_000)


@pytest.mark.host
def test_esp_idf_gen_esp32part_reads_the_table_with_the_same_offsets(tmp_path):
    """ESP-IDF's own partition-table tool (components/partition_table/gen_esp32part.py)."""
    tool = os.environ.get("TINYDEPLOY_GEN_ESP32PART")
    if not tool:
        pytest.skip("set TINYDEPLOY_GEN_ESP32PART to ESP-IDF's components/partition_table/gen_esp32part.py")
    parts = partitions.layout(4096, 40_000)
    table = tmp_path / "partitions.csv"
    table.write_text(partitions.csv(parts, "test"))
    binary = tmp_path / "partitions.bin"
    made = subprocess.run([sys.executable, tool, "--flash-size", "4MB", str(table), str(binary)],
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    shown = subprocess.run([sys.executable, tool, str(binary)], capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split(",")[0]: line.split(",") for line in shown.stdout.splitlines() if not line.startswith("#")}
    sizes = {"K": 1024, "M": 1024 * 1024}
    for p in parts:
        row = rows[p.name]
        size = row[4]
        assert int(row[3], 16) == p.offset
        assert (int(size[:-1]) * sizes[size[-1]] if size[-1] in sizes else int(size, 0)) == p.size


# -- end to end on the virtual device -------------------------------------------------------

def _cnn(seed: int = 0, first: int = 8, extra_pool: bool = False, shape=(32, 32, 1)) -> bytes:
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf
    keras = _tf.keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    stack = [layers.Input(shape), layers.Conv2D(first, 3, activation="relu"), layers.MaxPooling2D()]
    if extra_pool:
        stack.append(layers.AveragePooling2D(1))
    stack += [layers.DepthwiseConv2D(3, activation="relu"), layers.Conv2D(16, 1, activation="relu"),
              layers.GlobalAveragePooling2D(), layers.Dense(10, activation="softmax")]
    sample = np.random.default_rng(seed).random((16, *shape), dtype=np.float32)
    return to_int8_tflite(keras.Sequential(stack), sample)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("versions")
    made = {"a": _cnn(0), "b": _cnn(1), "extra_op": _cnn(2, extra_pool=True), "bigger_arena": _cnn(3, first=32),
            "other_input": _cnn(4, shape=(28, 28, 1))}
    paths = {}
    for name, data in made.items():
        (folder / f"{name}.tflite").write_bytes(data)
        paths[name] = folder / f"{name}.tflite"
        (folder / f"{name}.bin").write_bytes(package.package(load_model(paths[name]), "1.1.0"))
    return folder, paths


def _device(zoo, flash: Path, **options) -> VirtualDevice:
    return VirtualDevice(zoo[1]["a"], slots=flash, version="1.0.0", **options)


def _outputs(port: str, log: Path, samples: np.ndarray) -> list[list[int]]:
    conn = Connection(port, 115200, log)
    try:
        conn.sync(boot_wait=0.1)
        found = []
        for sample in samples:
            load_input(conn, sample.tobytes())
            found.append(next(line.value for line in conn.command("infer 1 0") if line.kind == "results"))
        return found
    finally:
        conn.close()


def _info(port: str, log: Path) -> dict:
    conn = Connection(port, 115200, log)
    try:
        conn.sync(boot_wait=0.1)
        return read_info(conn)
    finally:
        conn.close()




@pytest.mark.host
def test_model_b_uploaded_over_serial_runs_reports_its_version_and_survives_a_reset(zoo, tmp_path):
    from tinydeploy.runtime import tflm
    folder, paths = zoo
    samples = np.random.default_rng(7).integers(-128, 128, (4, 1, 32, 32, 1), dtype=np.int8)
    expected_b = [[int(v) for v in tflm.TflmRunner(load_model(paths["b"])).invoke_int8(s[0])] for s in samples]
    expected_a = [[int(v) for v in tflm.TflmRunner(load_model(paths["a"])).invoke_int8(s[0])] for s in samples]
    assert expected_a != expected_b  # the test can tell the models apart
    flash = tmp_path / "flash"
    with _device(zoo, flash) as vd:
        port = vd.open_pty()
        assert _info(port, tmp_path / "0.log")["model_version"] == "1.0.0"
        result = upload_model(port, folder / "b.bin", tmp_path / "up.log")
        assert result["slot"] == "b" and result["before"] == {"slot": "a", "version": "1.0.0"}
        info = _info(port, tmp_path / "1.log")
        assert (info["model_slot"], info["model_version"], info["model_trial"]) == ("b", "1.1.0", True)
        assert info["model_sha256"] == load_model(paths["b"]).sha256
        assert _outputs(port, tmp_path / "2.log", samples) == expected_b
    state, _ = slots.read_state(slots.FileFlash(flash, vd.flash.sizes["model_a"]))
    assert state.active == "b" and not state.trial and state.last_good == "b"  # proven by its first inference
    with _device(zoo, flash) as again:  # a reset: the flash folder stays
        port = again.open_pty()
        info = _info(port, tmp_path / "3.log")
        assert (info["model_slot"], info["model_version"], info["model_trial"]) == ("b", "1.1.0", False)
        assert _outputs(port, tmp_path / "4.log", samples[:2]) == expected_b[:2]


def _flipped(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) - 100] ^= 0x40
    return bytes(changed)


@pytest.mark.host
@pytest.mark.parametrize("case, expected", [
    ("flipped", "bad checksum"),
    ("newer", "made by a newer tinydeploy"),
    ("extra_op", "op AVERAGE_POOL_2D not registered"),
    ("bigger_arena", "B of arena, firmware has"),
    ("other_input", "input 1x28x28x1 != 1x32x32x1"),
])
def test_a_refused_upload_leaves_the_old_model_running_and_names_why(zoo, tmp_path, case, expected):
    folder, _ = zoo
    data = {"flipped": lambda: _flipped((folder / "b.bin").read_bytes()),
            "newer": lambda: _newer((folder / "b.bin").read_bytes())}.get(
        case, lambda: (folder / f"{case}.bin").read_bytes())()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(data)
    with _device(zoo, tmp_path / "flash") as vd:
        port = vd.open_pty()
        conn = Connection(port, 115200, tmp_path / "raw.log")
        try:
            conn.sync(boot_wait=0.1)
            conn.command(f"model begin {len(data)}")
            from tinydeploy.device.model_upload import send_chunk
            for start in range(0, len(data), 512):
                send_chunk(conn, data[start:start + 512])
            with pytest.raises(StepFailed, match=expected) as refused:
                conn.command("model commit")
            assert "slot a keeps running" in str(refused.value)
        finally:
            conn.close()
        info = _info(port, tmp_path / "after.log")
        assert (info["model_slot"], info["model_version"]) == ("a", "1.0.0")
    with _device(zoo, tmp_path / "flash") as again:  # and after a reset
        assert (again.booted.slot, again.booted.image.header.version) == ("a", "1.0.0") and not again.boot_messages


@pytest.mark.host
def test_a_truncated_upload_then_a_restart_keeps_the_old_model_and_a_retry_works(zoo, tmp_path):
    folder, _ = zoo
    data = (folder / "b.bin").read_bytes()
    flash = tmp_path / "flash"
    with _device(zoo, flash) as vd:
        port = vd.open_pty()
        conn = Connection(port, 115200, tmp_path / "cut.log")
        try:
            conn.sync(boot_wait=0.1)
            conn.command(f"model begin {len(data)}")
            from tinydeploy.device.model_upload import send_chunk
            middle = len(data) // 2 // 512 * 512
            for start in range(0, middle, 512):
                send_chunk(conn, data[start:start + 512])
            piece = data[middle:middle + 512]
            conn.serial.write(f"model chunk {len(piece)} {image.crc32(piece):08x}%".encode() + piece[:100])
            conn.serial.flush()
        finally:
            conn.close()
    # the device was killed in the middle of a chunk; it boots again on the same flash
    with _device(zoo, flash) as again:
        assert (again.booted.slot, again.booted.image.header.version) == ("a", "1.0.0")
        port = again.open_pty()
        assert _info(port, tmp_path / "boot.log")["model_version"] == "1.0.0"
        assert upload_model(port, folder / "b.bin", tmp_path / "retry.log")["slot"] == "b"


@pytest.mark.host
def test_a_chunk_with_a_bad_crc_is_refused_and_can_be_sent_again(zoo, tmp_path):
    folder, _ = zoo
    data = (folder / "b.bin").read_bytes()
    with _device(zoo, tmp_path / "flash") as vd:
        conn = Connection(vd.open_pty(), 115200, tmp_path / "crc.log")
        try:
            conn.sync(boot_wait=0.1)
            conn.command(f"model begin {len(data)}")
            piece = data[:256]
            conn.serial.write(f"model chunk 256 {image.crc32(piece) ^ 1:08x}%".encode() + piece)
            with pytest.raises(StepFailed, match="send it again"):
                conn.replies(["model chunk"])
            from tinydeploy.device.model_upload import send_chunk
            assert send_chunk(conn, piece) == 256  # the same chunk, right this time, lands at 0
        finally:
            conn.close()


@pytest.mark.host
def test_a_slot_written_to_try_that_fails_its_boot_check_rolls_back_naming_why(zoo, tmp_path):
    """What `flash --model` leaves when the image in the slot is damaged: the boot check
    refuses it, says why over serial, and the last good slot runs."""
    folder, _ = zoo
    flash = tmp_path / "flash"
    with _device(zoo, flash) as vd:
        sizes = vd.flash.sizes["model_a"]
    store = slots.FileFlash(flash, sizes)
    store.erase("model_b", 0, sizes)
    store.write("model_b", 0, _flipped((folder / "b.bin").read_bytes()))
    state, _ = slots.read_state(store)
    slots.write_state(store, state.next("b", True, "a"))
    with _device(zoo, flash) as again:
        assert again.booted.slot == "a"
        assert again.boot_messages and "slot b" in again.boot_messages[0] and "bad checksum" in again.boot_messages[0]
        conn = Connection(again.open_tcp(0), 115200, tmp_path / "boot.log")  # a session starts with the banner
        try:
            conn.sync(boot_wait=1.0)
            assert any("bad checksum" in str(line.value) for line in conn.boot if line.kind == "error")
        finally:
            conn.close()
    assert slots.read_state(store)[0].active == "a"  # the refusal is remembered


@pytest.mark.host
def test_upload_throughput_on_the_virtual_device_at_115200_baud(zoo, tmp_path):
    folder, _ = zoo
    with _device(zoo, tmp_path / "flash", baud=115200) as vd:
        result = upload_model(vd.open_pty(), folder / "b.bin", tmp_path / "paced.log")
    print(f"upload: {result['bytes']} B in {result['seconds']} s = {result['bytes_per_second']} B/s at 115200 baud")
    assert 4000 < result["bytes_per_second"] <= 11520  # a UART at 115200 8N1 carries 11,520 B/s at most


@pytest.mark.host
def test_verify_expect_version_fails_on_a_mismatch(zoo, tmp_path):
    from tinydeploy.device.bench import bench
    from tinydeploy.device.verify import verify
    with _device(zoo, tmp_path / "flash") as vd:
        bench(vd.open_pty(), tmp_path / "bench", runs=2, warmup=0)
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert (results["model_slot"], results["model_version"]) == ("a", "1.0.0")
    right = verify(results, expect_version="1.0.0")
    wrong = verify(results, expect_version="1.1.0")
    assert next(v for v in right if v.name == "model version").met
    missed = next(v for v in wrong if v.name == "model version")
    assert not missed.met and "expected 1.1.0" in missed.detail
    code, _, err = run_cli(*["verify", str(tmp_path / "bench"), "--expect-version", "1.1.0"])
    assert code == 1


# -- flash --model: the image to the inactive slot at the table's offsets -------------------

@pytest.mark.host
def test_flash_model_writes_the_inactive_slot_at_the_tables_offset_and_marks_it_to_try(zoo, tmp_path, monkeypatch):
    from tinydeploy.toolchain import model_flash
    folder, paths = zoo
    project = tmp_path / "proj"
    code, _, err = run_cli(*["render", str(paths["a"]), "--board", "esp32-c3-devkitm-1", "--out", str(project),
                            "--model-partition"])
    assert code == 0, err
    table = partitions.slots(partitions.read_csv((project / "partitions.csv").read_text()))
    running = image.pack_state(image.SlotState(3, "b", False, "b"))  # the board runs slot b
    commands = []

    def fake_run(command, log, on_line=None, **_):
        commands.append(command)
        if "read-flash" in command:
            Path(command[-1]).write_bytes(running.ljust(0x1000, b"\xff") + b"\xff" * 0x1000)
        else:
            written = Path(command[command.index(hex(table["state"].offset + 0x1000)) + 1]).read_bytes()
            commands.append(image.unpack_state(written[:image.STATE_BYTES]))
        return 0, []
    monkeypatch.setattr(model_flash, "run_logged", fake_run)
    result = model_flash.flash_model(project, folder / "b.bin", port="/dev/null")
    read, write, state = commands
    assert read[read.index("read-flash") + 1:read.index("read-flash") + 3] == [hex(table["state"].offset), "0x2000"]
    assert write[write.index("write-flash") + 1] == hex(table["a"].offset)  # slot a: the one not running
    assert result["slot"] == "a" and result["state_offset"] == table["state"].offset + 0x1000
    assert state == image.SlotState(4, "a", True, "b")
    assert "--chip" in write and write[write.index("--chip") + 1] == "esp32c3"


@pytest.mark.host
def test_package_and_flash_dry_run_say_whether_an_image_fits_a_project(zoo, tmp_path):
    folder, paths = zoo
    project = tmp_path / "proj"
    assert run_cli(*["render", str(paths["a"]), "--board", "esp32-c3-devkitm-1", "--out", str(project),
                    "--model-partition"])[0] == 0
    out = tmp_path / "b.bin"
    code, text, err = run_cli(*["package", str(paths["b"]), "--version", "2.0.0-rc.1", "--out", str(out)])
    assert code == 0, err and "2.0.0-rc.1" in text
    assert image.parse(out.read_bytes()).header.version == "2.0.0-rc.1"
    code, text, _ = run_cli(*["flash", str(project), "--model", str(out), "--dry-run"])
    assert code == 0 and "fits" in text
    code, _, err = run_cli(*["flash", str(project), "--model", str(folder / "extra_op.bin"), "--dry-run"])
    assert code == 2 and "op AVERAGE_POOL_2D not registered" in err
    code, _, err = run_cli(*["package", str(paths["b"]), "--version", "2.0", "--out", str(tmp_path / "c.bin")])
    assert code == 2 and "semantic version" in err
    plain = tmp_path / "plain"
    assert run_cli(*["render", str(paths["a"]), "--board", "esp32-c3-devkitm-1", "--out", str(plain)])[0] == 0
    code, _, err = run_cli(*["flash", str(plain), "--model", str(out), "--dry-run"])
    assert code == 2 and "--model-partition" in err


# -- the C firmware (firmware/td_slots.c) against its Python twin -----------------------------

ROOT = Path(__file__).resolve().parents[1]
TWIN_OPS = ("CONV_2D", "FULLY_CONNECTED", "SOFTMAX")
TWIN_SLOT = 0x10000


@pytest.fixture(scope="module")
def slots_host(tmp_path_factory):
    from tests.helpers import need_programs
    need_programs("gcc", packages="gcc")
    exe = tmp_path_factory.mktemp("slots") / "slots_host"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{ROOT / 'firmware'}",
                    str(ROOT / "firmware" / "td_protocol.c"), str(ROOT / "firmware" / "td_slots.c"),
                    str(ROOT / "tests" / "slots_host.c"), "-o", str(exe)], check=True)
    return exe


def _twin_contract() -> dict:
    return image.firmware_contract("tflm", TWIN_OPS, 11680, "esp-nn", image.TensorSpec((1, 32, 32, 1), "int8", 0.5, 0),
                                   image.TensorSpec((1, 10), "int8", 0.5, 0))


def _twin_image(version: str, seed: int, **changes) -> bytes:
    model = np.random.default_rng(seed).integers(0, 256, 1500, dtype=np.uint8).tobytes()
    values = dict(ops=TWIN_OPS, arena={"reference": 10000, "esp-nn": 10600, "esp-nn-s3": 11400},
                  input=image.TensorSpec((1, 32, 32, 1), "int8", 0.5, 0), output=image.TensorSpec((1, 10), "int8", 0.5, 0),
                  labels=())
    values.update(changes)
    return image.pack(_header(model, version=version, **values), model)


def _python_twin(folder: Path, contract: dict, script: bytes) -> bytes:
    """The virtual device's side (device/slots.py and core/protocol.py) on the same script."""
    from tinydeploy.core.protocol import DeviceProtocol
    out = bytearray()
    flash = slots.FileFlash(folder, TWIN_SLOT)
    position = 0
    while True:
        booted = slots.boot(flash, contract)
        restarted = []

        class Slots:
            upload = slots.Upload(flash, booted.slot, contract)

            def begin(self, size):
                return self.upload.begin(size)

            def chunk(self, data, crc):
                return self.upload.chunk(data, crc)

            def commit(self):
                header = self.upload.commit().header
                return f"{self.upload.target} {header.version} {header.model_sha256[:12]}"

            def restart(self):
                restarted.append(True)

        info = json.dumps({"arena_used_bytes": 1, "model_sha256": booted.image.header.model_sha256,
                           "model_bytes": len(booted.image.model), "board": "host", "model_slot": booted.slot,
                           "model_version": booted.image.header.version, "model_trial": booted.trial},
                          separators=(",", ":"))
        protocol = DeviceProtocol(out.extend, lambda: 0, lambda data: [0, 0], lambda: info, 4, 2, "host", "slots",
                                  slots=Slots())
        for message in booted.messages:
            protocol.error(message)
        protocol.boot()
        while position < len(script) and not restarted:
            protocol.feed(script[position:position + 1])
            position += 1
        if not restarted:
            return bytes(out)


def _upload_script(data: bytes, bad_crc_at: int | None = None) -> bytes:
    script = f"info%model begin {len(data)}%".encode()
    for number, start in enumerate(range(0, len(data), 300)):
        piece = data[start:start + 300]
        if number == bad_crc_at:
            script += f"model chunk {len(piece)} {image.crc32(piece) ^ 0x10:08x}%".encode() + piece
        script += f"model chunk {len(piece)} {image.crc32(piece):08x}%".encode() + piece
    return script + b"model commit%info%"


def _twin_cases():
    good = _twin_image("1.1.0", 1)
    flipped = bytearray(good)
    flipped[-7] ^= 0x01
    return {
        "good": (_upload_script(good, bad_crc_at=2), "m-model-committed-[b 1.1.0 "),
        "flipped": (_upload_script(bytes(flipped)), "bad checksum"),
        "newer": (_upload_script(_newer(good)), "made by a newer tinydeploy"),
        "extra_op": (_upload_script(_twin_image("1.2.0", 2, ops=(*TWIN_OPS, "MEAN"))), "op MEAN not registered"),
        "bigger_arena": (_upload_script(_twin_image("1.3.0", 3, arena={"esp-nn": 21400})),
                         "needs 21,400 B of arena, firmware has 11,680"),
        "other_input": (_upload_script(_twin_image("1.4.0", 4, input=image.TensorSpec((1, 28, 28, 1), "int8", 0.5, 0))),
                        "input 1x28x28x1 != 1x32x32x1"),
        "usage": (b"model%model begin x%model chunk 0 1%model chunk 4 12345678%abcdmodel commit%", "usage: model"),
        "no_kernels": (_upload_script(_twin_image("1.5.0", 5, arena={"reference": 1})),
                       "no arena figure for the esp-nn kernels (it has: reference)"),
    }


@pytest.mark.host
@pytest.mark.parametrize("case", list(_twin_cases()))
def test_the_c_slots_answer_and_write_flash_exactly_as_the_python_twin(slots_host, tmp_path, case):
    script, expected = _twin_cases()[case]
    contract = _twin_contract()
    folders = [tmp_path / "c", tmp_path / "py"]
    for folder in folders:
        store = slots.FileFlash(folder, TWIN_SLOT)
        store.write("model_a", 0, _twin_image("1.0.0", 0))
    c_out = subprocess.run([str(slots_host), str(folders[0]), str(TWIN_SLOT), ",".join(TWIN_OPS), "11680", "esp-nn",
                            "1x32x32x1", "1x10"], input=script, capture_output=True, check=True).stdout
    py_out = _python_twin(folders[1], contract, script)
    assert c_out == py_out
    assert expected in c_out.decode()
    for name in ("td_state", "model_a", "model_b"):
        assert (folders[0] / f"{name}.bin").read_bytes() == (folders[1] / f"{name}.bin").read_bytes(), name
    if case == "good":
        assert c_out.decode().count("m-init-done") == 2  # restarted into slot b
        assert c_out.decode().endswith('"model_slot":"b","model_version":"1.1.0","model_trial":true}\r\nm-ready\r\n')
        assert "send it again" in c_out.decode()
    elif case != "usage":
        assert "keeps running" in c_out.decode() and c_out.decode().count("m-init-done") == 1


@pytest.mark.host
def test_the_c_boot_check_rolls_back_from_a_bad_slot_on_trial_as_the_twin_does(slots_host, tmp_path):
    folders = [tmp_path / "c", tmp_path / "py"]
    bad = bytearray(_twin_image("1.1.0", 1))
    bad[300] ^= 0x80
    for folder in folders:
        store = slots.FileFlash(folder, TWIN_SLOT)
        store.write("model_a", 0, _twin_image("1.0.0", 0))
        slots.write_state(store, image.SlotState(1, "a", False, "a"))
        store.write("model_b", 0, bytes(bad))
        slots.write_state(store, image.SlotState(2, "b", True, "a"))  # as flash --model leaves it
    c_out = subprocess.run([str(slots_host), str(folders[0]), str(TWIN_SLOT), ",".join(TWIN_OPS), "11680", "esp-nn",
                            "1x32x32x1", "1x10"], input=b"info%", capture_output=True, check=True).stdout
    assert c_out == _python_twin(folders[1], _twin_contract(), b"info%")
    assert c_out.decode().startswith("e-[slot b: bad checksum")
    assert "running slot a]" in c_out.decode() and '"model_slot":"a"' in c_out.decode()
    assert (folders[0] / "td_state.bin").read_bytes() == (folders[1] / "td_state.bin").read_bytes()
    assert slots.read_state(slots.FileFlash(folders[0], TWIN_SLOT))[0] == image.SlotState(3, "a", False, "a")


# -- the real TFLM firmware with --model-partition, built on the host ------------------------

@pytest.mark.host
def test_the_tflm_firmware_takes_model_b_over_serial_runs_it_from_the_slot_and_keeps_it(zoo, tmp_path):
    """render --model-partition's ESP-IDF project (td_main, td_tflm_runner reading the model in
    place from the mapped slot, td_slots, hal_espidf_slots.c), compiled 32-bit with warnings as
    errors against bench/host_shim's ESP-IDF stand-ins (partitions as files, esp_restart as exec)."""
    import pty
    import tty
    tflm_src = os.environ.get("TINYDEPLOY_TFLM_SRC")
    esp_nn = os.environ.get("TINYDEPLOY_ESP_NN_SRC")
    if not tflm_src or not esp_nn:
        pytest.skip("set TINYDEPLOY_TFLM_SRC and TINYDEPLOY_ESP_NN_SRC to build the real TFLM firmware on the host")
    from tests.helpers import missing, need_programs
    need_programs("gcc", "g++", packages="gcc-multilib g++-multilib")
    if subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", "/dev/null"], input=b"int main(void){return 0;}",
                      capture_output=True).returncode:
        missing("needs a 32-bit host compiler (Debian: apt-get install gcc-multilib g++-multilib)")
    sys.path.insert(0, str(ROOT / "bench"))
    import firmware_host_check
    from tinydeploy.runtime import tflm
    folder, paths = zoo
    project = tmp_path / "fw"
    code, _, err = run_cli(*["render", str(paths["a"]), "--board", "esp32-c3-devkitm-1", "--out", str(project),
                             "--model-partition"])
    assert code == 0, err
    work = Path(os.environ.get("TINYDEPLOY_HOST_CHECK_WORK") or tmp_path / "host-check")
    binary, _ = firmware_host_check.build(project, Path(tflm_src), Path(esp_nn), None, work / "slots")
    sizes = json.loads((project / "tinydeploy.json").read_text())["model_slots"]
    flash = tmp_path / "flash"
    store = slots.FileFlash(flash, sizes["model_a"]["size"])
    store.write("model_a", 0, package.package(load_model(paths["a"]), "1.0.0"))  # as `flash --model` leaves slot a
    samples = np.random.default_rng(3).integers(-128, 128, (3, 1, 32, 32, 1), dtype=np.int8)
    expected_b = [[int(v) for v in tflm.TflmRunner(load_model(paths["b"])).invoke_int8(s[0])] for s in samples]

    def boot() -> tuple[subprocess.Popen, str, int]:
        master, slave = pty.openpty()  # the slave stays open, so the firmware never reads an EOF
        tty.setraw(slave)
        process = subprocess.Popen([str(binary)], stdin=master, stdout=master, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "TD_HOST_FLASH": str(flash)})
        return process, os.ttyname(slave), master

    process, port, master = boot()
    try:
        assert _info(port, tmp_path / "a.log")["model_version"] == "1.0.0"
        result = upload_model(port, folder / "b.bin", tmp_path / "upload.log")
        assert (result["slot"], result["version"]) == ("b", "1.1.0")
        info = _info(port, tmp_path / "b.log")
        assert info["model_sha256"] == load_model(paths["b"]).sha256 and info["model_trial"] is True
        assert info["engine"] == "tflm" and info["arena_used_bytes"] is not None
        assert _outputs(port, tmp_path / "out.log", samples) == expected_b
    finally:
        process.kill()
        process.wait()
        os.close(master)
    process, port, master = boot()  # a reset: the same flash
    try:
        info = _info(port, tmp_path / "reset.log")
        assert (info["model_slot"], info["model_version"], info["model_trial"]) == ("b", "1.1.0", False)
        assert _outputs(port, tmp_path / "again.log", samples[:1]) == expected_b[:1]
    finally:
        process.kill()
        process.wait()
        os.close(master)


@pytest.mark.unit
def test_a_slot_on_trial_whose_first_inference_fails_gives_way_to_the_last_good_one(tmp_path):
    store = slots.FileFlash(tmp_path, TWIN_SLOT)
    store.write("model_a", 0, _twin_image("1.0.0", 0))
    upload = slots.Upload(store, slots.boot(store, _twin_contract()).slot, _twin_contract())
    data = _twin_image("1.1.0", 1)
    upload.begin(len(data))
    upload.chunk(data, image.crc32(data))
    upload.commit()
    booted = slots.boot(store, _twin_contract())
    assert (booted.slot, booted.trial) == ("b", True)
    assert "rolled back to slot a" in slots.failed_first(store, booted)
    again = slots.boot(store, _twin_contract())
    assert (again.slot, again.trial, again.image.header.version) == ("a", False, "1.0.0")
    assert slots.failed_first(store, again) is None  # not on trial: nothing to roll back


@pytest.mark.host
def test_the_esp_idf_slot_firmware_boots_updates_over_serial_restarts_and_keeps_the_new_model(zoo, tmp_path):
    """The rendered --model-partition project's td_main.c, td_main_slots.c, td_slots.c, td_contract.c,
    hal_espidf.c and hal_espidf_slots.c, built with warnings as errors against bench/host_shim's
    ESP-IDF stand-ins (partitions are files, esp_partition_mmap is mmap, esp_restart an exec), with
    a stand-in runner that reads the model in place from the mapped slot (tests/slot_runner_host.c;
    the TFLM build of the same project: the test above)."""
    from tests.helpers import need_programs
    need_programs("gcc", packages="gcc")
    folder, paths = zoo
    project = tmp_path / "fw"
    code, _, err = run_cli(*["render", str(paths["a"]), "--board", "esp32-c3-devkitm-1", "--out", str(project),
                             "--model-partition"])
    assert code == 0, err
    src, shim = project / "src", ROOT / "bench" / "host_shim"
    binary = tmp_path / "firmware"
    sources = [src / name for name in ("td_main.c", "td_main_slots.c", "td_slots.c", "td_contract.c", "td_protocol.c",
                                       "td_board.c", "hal_espidf.c", "hal_espidf_slots.c")]
    sources += [ROOT / "tests" / "slot_runner_host.c", shim / "host_uart.c", shim / "sleep_shim.c",
                shim / "espidf" / "espidf_shim.c",
                shim / "espidf" / "esp_partition_shim.c"]
    subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-DTD_MODEL_PARTITION", "-DTD_BAUD=115200",
                    f"-I{src}", f"-I{shim}", f"-I{shim / 'espidf'}", *map(str, sources), "-o", str(binary),
                    "-lpthread"], check=True)
    sizes = json.loads((project / "tinydeploy.json").read_text())["model_slots"]
    flash = tmp_path / "flash"
    store = slots.FileFlash(flash, sizes["model_a"]["size"])
    store.write("model_a", 0, package.package(load_model(paths["a"]), "1.0.0"))
    models = {name: load_model(paths[name]).data for name in ("a", "b")}
    sample = np.full((1, 32, 32, 1), 1, dtype=np.int8)

    def expected(name: str) -> list[int]:
        total = 1024 + sum(models[name][:4096])
        return [int(np.uint8((total + i) & 0xFF).astype(np.int8)) for i in range(10)]

    def boot():
        return _boot_on_pty(binary, flash)

    assert expected("a") != expected("b")
    process, port, master = boot()
    try:
        info = _info(port, tmp_path / "a.log")
        assert (info["model_slot"], info["model_version"]) == ("a", "1.0.0") and info["engine"] == "tflm"
        assert _outputs(port, tmp_path / "a-out.log", [sample]) == [expected("a")]
        result = upload_model(port, folder / "b.bin", tmp_path / "upload.log")  # restarts (exec) into slot b
        assert (result["slot"], result["version"]) == ("b", "1.1.0")
        info = _info(port, tmp_path / "b.log")
        assert info["model_sha256"] == hashlib_sha256(models["b"]) and info["model_bytes"] == len(models["b"])
        assert _outputs(port, tmp_path / "b-out.log", [sample]) == [expected("b")]
        bad = bytearray((folder / "b.bin").read_bytes())
        bad[-50] ^= 0x04
        (tmp_path / "bad.bin").write_bytes(bytes(bad))
        with pytest.raises(BadInput, match="bad checksum"):  # the host refuses it before sending
            upload_model(port, tmp_path / "bad.bin", tmp_path / "bad.log")
        refused = _raw_upload(port, bytes(bad), tmp_path / "raw.log")  # and so does the firmware
        assert "model refused, slot b keeps running: slot a: bad checksum" in refused
        assert _info(port, tmp_path / "still.log")["model_version"] == "1.1.0"
    finally:
        _stop(process, master)
    process, port, master = boot()  # a reset
    try:
        info = _info(port, tmp_path / "reset.log")
        assert (info["model_slot"], info["model_version"], info["model_trial"]) == ("b", "1.1.0", False)
        assert _outputs(port, tmp_path / "reset-out.log", [sample]) == [expected("b")]
    finally:
        _stop(process, master)


def _boot_on_pty(binary: Path, flash: Path):
    """A host build of the slot firmware on a pty, its partitions files in flash: (process, the
    pty's name, the two descriptors to close)."""
    import pty
    import tty
    master, slave = pty.openpty()  # the slave stays open, so the firmware never reads an EOF
    tty.setraw(slave)
    process = subprocess.Popen([str(binary)], stdin=master, stdout=master, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TD_HOST_FLASH": str(flash)})
    return process, os.ttyname(slave), (master, slave)


def _stop(process, fds) -> None:
    process.kill()
    process.wait()
    for fd in fds:
        os.close(fd)


def _raw_upload(port: str, data: bytes, log: Path) -> str:
    """begin, chunks and commit with no check on the host; the device's refusal, in its words."""
    from tinydeploy.device.model_upload import send_chunk
    conn = Connection(port, 115200, log)
    try:
        conn.sync(boot_wait=0.1)
        conn.command(f"model begin {len(data)}")
        for start in range(0, len(data), 512):
            send_chunk(conn, data[start:start + 512])
        with pytest.raises(StepFailed) as refused:
            conn.command("model commit")
        return str(refused.value)
    finally:
        conn.close()


def hashlib_sha256(data: bytes) -> str:
    import hashlib
    return hashlib.sha256(data).hexdigest()


@pytest.mark.host
def test_the_c_engine_firmware_reads_its_constants_from_the_slot_and_takes_a_retrained_model(zoo, tmp_path):
    """render --engine c --model-partition: the C engine's code (its plan) stays in the
    application and its constants come from the slot. The whole ESP-IDF project (td_c_runner,
    the generated td_model.c, the kernels, the slots) built with warnings as errors against
    bench/host_shim's ESP-IDF stand-ins; model b (the same layers, other weights) uploaded over
    serial answers as TFLite's reference kernels answer for b, and keeps running after a reset;
    a model of other layers is refused by its plan."""
    from tests.helpers import need_programs
    from tinydeploy.runtime.evaluate import reference_outputs
    need_programs("gcc", packages="gcc")
    folder, paths = zoo
    project = tmp_path / "fw"
    code, _, err = run_cli(*["render", str(paths["a"]), "--board", "esp32-c3-devkitm-1", "--engine", "c", "--out",
                             str(project), "--model-partition"])
    assert code == 0, err
    src, shim = project / "src", ROOT / "bench" / "host_shim"
    model_c = (src / "td_model.c").read_text()
    assert "_weights[" not in model_c and "TD_CONSTANTS(int8_t," in model_c  # no weights compiled in
    binary = tmp_path / "firmware"
    sources = [src / name for name in ("td_main.c", "td_main_slots.c", "td_slots.c", "td_contract.c", "td_protocol.c",
                                       "td_board.c", "hal_espidf.c", "hal_espidf_slots.c", "td_c_runner.c",
                                       "td_model.c", "td_kernels.c")]
    sources += [shim / "host_uart.c", shim / "sleep_shim.c", shim / "espidf" / "espidf_shim.c",
                shim / "espidf" / "esp_partition_shim.c"]
    subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-O1", "-DTD_MODEL_PARTITION", "-DTD_BAUD=115200",
                    "-DTD_PROFILE", f"-I{src}", f"-I{shim}", f"-I{shim / 'espidf'}", *map(str, sources), "-o",
                    str(binary), "-lpthread"], check=True)
    sizes = json.loads((project / "tinydeploy.json").read_text())["model_slots"]
    flash = tmp_path / "flash"
    store = slots.FileFlash(flash, sizes["model_a"]["size"])
    store.write("model_a", 0, package.package(load_model(paths["a"]), "1.0.0"))
    samples = np.random.default_rng(5).integers(-128, 128, (4, 1, 32, 32, 1), dtype=np.int8)
    expected = {name: [[int(v) for v in row] for row in reference_outputs(load_model(paths[name]), samples[:, 0])
                       .reshape(len(samples), -1)] for name in ("a", "b")}
    assert expected["a"] != expected["b"]

    def boot():
        return _boot_on_pty(binary, flash)

    process, port, fds = boot()
    try:
        info = _info(port, tmp_path / "a.log")
        assert (info["model_slot"], info["model_version"], info["engine"]) == ("a", "1.0.0", "c")
        assert _outputs(port, tmp_path / "a-out.log", samples) == expected["a"]
        with pytest.raises(StepFailed, match="model refused, slot a keeps running: slot b .*: op AVERAGE_POOL_2D not "
                                             "registered; plan [0-9a-f]{12} != the firmware's"):  # other layers
            upload_model(port, folder / "extra_op.bin", tmp_path / "extra.log")
        result = upload_model(port, folder / "b.bin", tmp_path / "upload.log")  # restarts into slot b
        assert (result["slot"], result["version"]) == ("b", "1.1.0")
        info = _info(port, tmp_path / "b.log")
        assert info["model_sha256"] == load_model(paths["b"]).sha256 and info["model_trial"] is True
        assert _outputs(port, tmp_path / "b-out.log", samples) == expected["b"]
    finally:
        _stop(process, fds)
    process, port, fds = boot()  # a reset: the same flash
    try:
        info = _info(port, tmp_path / "reset.log")
        assert (info["model_slot"], info["model_version"], info["model_trial"]) == ("b", "1.1.0", False)
        assert _outputs(port, tmp_path / "reset-out.log", samples[:1]) == expected["b"][:1]
    finally:
        _stop(process, fds)


@pytest.mark.host
def test_models_of_the_same_layers_share_a_plan_and_differ_in_their_constants(zoo):
    from tinydeploy.codegen import cengine
    from tinydeploy.codegen.cengine import constants
    _, paths = zoo
    lowered = {name: cengine.lower(load_model(paths[name])) for name in ("a", "b", "extra_op", "other_input")}
    plans = {name: constants.plan_sha256(low) for name, low in lowered.items()}
    assert plans["a"] == plans["b"] and len({plans["a"], plans["extra_op"], plans["other_input"]}) == 3
    a, b = constants.pack(lowered["a"]), constants.pack(lowered["b"])
    assert a.offsets == b.offsets and a.size == b.size and a.size % 16 == 0 and a.data != b.data
    for (index, name), offset in a.offsets.items():  # arrays on 16 bytes (the kernels' loads), numbers on 4
        call = lowered["a"].members[index]
        value = dict(call.fields)[name]
        assert offset % (16 if constants.kind(call, name, value) == "array" else 4) == 0
    parsed = image.parse((zoo[0] / "b.bin").read_bytes())  # package puts them after the model
    assert parsed.constants == b.data and parsed.header.plan_sha256 == plans["b"]


@pytest.mark.host
def test_on_the_emulated_board_the_c_engine_firmware_takes_model_b_and_survives_every_fault(zoo, tmp_path):
    """The real C-engine firmware for qemu-riscv32, rendered with --model-partition and cross-built,
    under QEMU with its flash in a file (tinydeploy emulate --model). Model b goes over serial;
    before it, each fault is refused by the device itself and leaves model a running: a corrupt
    image, a model of other layers, other input or a bigger arena, a newer image format, and an
    upload cut by killing the emulator at a middle chunk."""
    from tests.helpers import need_programs
    from tinydeploy import api
    from tinydeploy.runtime.evaluate import reference_outputs
    need_programs("riscv64-unknown-elf-gcc", "qemu-system-riscv32",
                  packages="gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc")
    folder, paths = zoo
    project = tmp_path / "fw"
    for command in (["render", str(paths["a"]), "--board", "qemu-riscv32", "--out", str(project),
                     "--model-partition"], ["build", str(project)]):
        code, _, err = run_cli(*command)
        assert code == 0, err
    first = tmp_path / "a.bin"
    first.write_bytes(package.package(load_model(paths["a"]), "1.0.0"))
    samples = np.random.default_rng(7).integers(-128, 128, (3, 1, 32, 32, 1), dtype=np.int8)
    expected = {name: [[int(v) for v in row] for row in reference_outputs(load_model(paths[name]), samples[:, 0])
                       .reshape(len(samples), -1)] for name in ("a", "b")}
    good = (folder / "b.bin").read_bytes()
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0x10  # one byte of the model flipped

    def still_a(url: str, log: str) -> None:
        info = _info(url, tmp_path / f"{log}.log")
        assert (info["model_slot"], info["model_version"]) == ("a", "1.0.0")

    with api.emulate(project, model=first) as emulator:
        info = _info(emulator.url, tmp_path / "a.log")
        assert (info["model_slot"], info["model_version"], info["engine"]) == ("a", "1.0.0", "c")
        assert _outputs(emulator.url, tmp_path / "a-out.log", samples) == expected["a"]
        for name, data, words in [
                ("corrupt", bytes(corrupt), ["bad checksum"]),
                ("extra_op", (folder / "extra_op.bin").read_bytes(), ["op AVERAGE_POOL_2D not registered", "plan "]),
                ("other_input", (folder / "other_input.bin").read_bytes(), ["plan ", "input 1x28x28x1 != 1x32x32x1"]),
                ("bigger_arena", (folder / "bigger_arena.bin").read_bytes(), ["plan ", "B of arena, firmware has"]),
                ("newer", _newer(good), ["image format 3 was made by a newer tinydeploy"])]:
            _raw_upload(emulator.url, data, tmp_path / f"{name}.log")
            refused = (tmp_path / f"{name}.log").read_text(errors="replace")  # the device's whole line
            assert "e-[model refused, slot a keeps running: slot b" in refused, name
            assert all(word in refused for word in words), (name, refused[-600:])
        still_a(emulator.url, "after-refusals")
    cut = tmp_path / "cut.log"
    with api.emulate(project) as emulator:  # the flash as the last run left it
        def kill_half_way(sent: int, total: int) -> None:
            if sent >= total // 2:
                emulator.process.kill()
        with pytest.raises(StepFailed):
            upload_model(emulator.url, folder / "b.bin", cut, chunk=256, on_progress=kill_half_way)
    with api.emulate(project) as emulator:  # rebooted after the cut
        still_a(emulator.url, "after-cut")
        result = upload_model(emulator.url, folder / "b.bin", tmp_path / "upload.log")
        assert (result["slot"], result["version"]) == ("b", "1.1.0")
        info = _info(emulator.url, tmp_path / "b.log")
        assert info["model_sha256"] == load_model(paths["b"]).sha256 and info["model_trial"] is True
        assert _outputs(emulator.url, tmp_path / "b-out.log", samples) == expected["b"]
    with api.emulate(project) as emulator:  # a reset keeps b, proven good
        info = _info(emulator.url, tmp_path / "reset.log")
        assert (info["model_slot"], info["model_version"], info["model_trial"]) == ("b", "1.1.0", False)
        assert _outputs(emulator.url, tmp_path / "reset-out.log", samples[:1]) == expected["b"][:1]


LIBRARY_MAIN = r"""
/* A user's application around an exported library with model slots (its app_main, started by
 * the ESP-IDF stand-ins' main): with $TD_UPDATE it sends that image through the library's update
 * API (pieces of 777 bytes) and commits, which restarts the board (here an exec; the variable is
 * unset first); then, or without it, it classifies the int8 windows in $TD_INPUTS. */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "digits.h"

static uint8_t image[1 << 20];

static void update(const char *path) {
  FILE *f = fopen(path, "rb");
  size_t n = fread(image, 1, sizeof(image), f), at;
  int code;
  fclose(f);
  unsetenv("TD_UPDATE");
  if (digits_update_begin((uint32_t)n) != DIGITS_OK) {
    printf("begin: %s\n", digits_update_error());
    exit(2);
  }
  for (at = 0; at < n; at += 777) {
    if (digits_update_write(image + at, n - at < 777 ? n - at : 777) != DIGITS_OK) {
      printf("write: %s\n", digits_update_error());
      exit(2);
    }
  }
  fflush(stdout);
  code = digits_update_commit(); /* restarts into the new slot when it is taken */
  printf("commit: %s: %s\n", digits_error_text(code), digits_update_error());
  exit(2);
}

void app_main(void) {
  int code = digits_setup(), i;
  FILE *f;
  int8_t input[DIGITS_INPUT_SIZE];
  digits_result result;
  if (code != DIGITS_OK) {
    printf("setup: %s\n", digits_error_text(code));
    if (getenv("TD_UPDATE") != NULL) update(getenv("TD_UPDATE")); /* a first model into empty slots */
    exit(1);
  }
  printf("version %s\n", digits_model_version());
  if (getenv("TD_UPDATE") != NULL) update(getenv("TD_UPDATE"));
  f = fopen(getenv("TD_INPUTS"), "rb");
  while (fread(input, 1, sizeof(input), f) == sizeof(input)) {
    if (digits_classify_int8(input, sizeof(input), &result) != DIGITS_OK) exit(3);
    printf("scores");
    for (i = 0; i < DIGITS_CLASSES; ++i) {
      printf(" %ld", lrintf(result.scores[i] / DIGITS_OUTPUT_SCALE) + DIGITS_OUTPUT_ZERO_POINT);
    }
    printf("\n");
  }
  fclose(f);
  exit(0);
}
"""


@pytest.mark.host
def test_an_exported_library_with_model_slots_updates_through_its_api(zoo, tmp_path):
    """export --kind idf-component --engine c --model-partition: the user's application (its own
    main) classifies with model a from slot A, sends model b through the header's update API
    (no serial protocol), and after the restart classifies as TFLite's reference kernels do for
    b; a model of other layers is refused with the reason and model b goes on. Built with
    warnings as errors against bench/host_shim's ESP-IDF stand-ins."""
    from tests.helpers import need_programs
    from tinydeploy.runtime.evaluate import reference_outputs
    need_programs("gcc", packages="gcc")
    folder, paths = zoo
    library = tmp_path / "digits"
    code, _, err = run_cli("export", str(paths["a"]), "--kind", "idf-component", "--engine", "c", "--name", "digits",
                           "--out", str(library), "--model-partition")
    assert code == 0, err
    assert (library / "partitions.csv").is_file() and "digits_update_commit" in (library / "include/digits.h").read_text()
    code, _, err = run_cli("export", str(paths["a"]), "--kind", "c-library", "--out", str(tmp_path / "plain"),
                           "--model-partition")
    assert code == 2 and "--kind c-library has no flash driver for the model slots; export it as --kind " \
                         "idf-component" in err
    (tmp_path / "app.c").write_text(LIBRARY_MAIN)
    shim = ROOT / "bench" / "host_shim"
    binary = tmp_path / "app"
    sources = [*sorted((library / "src").glob("*.c")), tmp_path / "app.c", shim / "host_uart.c",
               shim / "espidf" / "espidf_shim.c", shim / "espidf" / "esp_partition_shim.c"]
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-DTD_MODEL_PARTITION",
                    f"-I{library / 'include'}", f"-I{library / 'src'}", f"-I{shim}", f"-I{shim / 'espidf'}",
                    *map(str, sources), "-o", str(binary), "-lm", "-lpthread"], check=True)
    sizes = {row.split(",")[0].strip(): row.split(",") for row in (library / "partitions.csv").read_text().splitlines()
             if row and not row.startswith("#")}
    flash = tmp_path / "flash"
    store = slots.FileFlash(flash, int(sizes["model_a"][4], 0))  # erased: no model yet
    (tmp_path / "a.bin").write_bytes(package.package(load_model(paths["a"]), "1.0.0"))
    samples = np.random.default_rng(9).integers(-128, 128, (3, 32, 32, 1), dtype=np.int8)
    (tmp_path / "inputs.bin").write_bytes(samples.tobytes())
    expected = {name: [[int(v) for v in row] for row in reference_outputs(load_model(paths[name]), samples)
                       .reshape(len(samples), -1)] for name in ("a", "b")}
    env = {**os.environ, "TD_HOST_FLASH": str(flash), "TD_INPUTS": str(tmp_path / "inputs.bin")}

    def run(*image: Path) -> tuple[str, list[list[int]]]:
        done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60,
                              env={**env, "TD_UPDATE": str(image[0])} if image else env)
        lines = done.stdout.splitlines()
        return done.stdout, [[int(v) for v in line.split()[1:]] for line in lines if line.startswith("scores")]

    shown, outputs = run()
    assert "setup: no model can run: slot a is empty" in shown and not outputs
    shown, outputs = run(tmp_path / "a.bin")  # the first model, through the same API; restarts into it
    assert "version 1.0.0" in shown and outputs == expected["a"], shown
    shown, outputs = run(folder / "b.bin")  # commits, restarts (exec) and classifies with b
    assert shown.splitlines()[:2] == ["version 1.0.0", "version 1.1.0"] and outputs == expected["b"], shown
    assert slots.read_state(store)[0].active == "b"
    shown, outputs = run(folder / "extra_op.bin")
    assert "commit: the model update failed: digits_update_error() says why: model refused, slot b keeps running: " \
           "slot a (model 1.1.0) does not fit the firmware: op AVERAGE_POOL_2D not registered; plan" in shown
    shown, outputs = run()
    assert "version 1.1.0" in shown and outputs == expected["b"]
