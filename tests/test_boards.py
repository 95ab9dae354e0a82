import pytest

from tinydeploy.core.boards import get_board, load_boards, parse_board
from tinydeploy.core.errors import BadInput

pytestmark = pytest.mark.unit

REQUIRED = {"esp32dev": "ESP32", "esp32-s3-devkitc-1": "ESP32-S3", "esp32-c3-devkitm-1": "ESP32-C3"}


def test_shipped_boards_have_every_field():
    boards = load_boards()
    assert {name: boards[name].chip for name in REQUIRED} == REQUIRED
    for board in (b for b in boards.values() if not b.emulated):
        assert board.cpu_mhz > 0 and board.sram_kb > 0 and board.flash_kb > 0
        assert board.arena_budget_kb < board.sram_kb
        assert board.platformio["platform"] == "espressif32"
        assert board.platformio["framework"] == "espidf"
        assert set(board.cycles_per_mac) == {"esp-nn", "ansi"}
        for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            # ESP-NN is faster than the portable kernels on every chip
            assert 0 < board.cycles_per_mac["esp-nn"][op] < board.cycles_per_mac["ansi"][op]
        assert "esp-tflite-micro" in board.latency_source


def test_the_emulated_board_is_data_too():
    board = get_board("qemu-riscv32")
    assert board.emulated and board.engines == ("c",) and board.timer == "instructions"
    assert board.toolchain["cc"] == "riscv64-unknown-elf-gcc"
    assert {"-march=rv32imc", "-mabi=ilp32", "-misa-spec=2.2"} <= set(board.toolchain["cflags"])
    assert board.emulator["command"][:3] == ["qemu-system-riscv32", "-machine", "virt"]
    assert "shift=0,sleep=off" in board.emulator["command"] and "none" in board.emulator["command"]
    assert set(board.toolchain["packages"]) | set(board.emulator["packages"]) == {
        "gcc-riscv64-unknown-elf", "picolibc-riscv64-unknown-elf", "qemu-system-misc"}
    assert board.cpu_mhz == 160  # the ESP32-C3's clock, for the labelled estimate
    assert 0 < board.cycles_per_mac["c-engine"]["CONV_2D"] and "bench/calibrate_board.py" in board.latency_source
    assert board.cycles_per_output["c-engine"]["DEPTHWISE_CONV_2D"] > 0  # per operator kind, requantization apart


def test_adding_a_board_is_adding_a_file(tmp_path):
    text = (load_boards()["esp32dev"].path and open(load_boards()["esp32dev"].path).read())
    (tmp_path / "my-board.toml").write_text(text.replace('name = "esp32dev"', 'name = "my-board"'))
    boards = load_boards(extra_dirs=(tmp_path,))
    assert "my-board" in boards and "esp32dev" in boards
    assert get_board("my-board", extra_dirs=(tmp_path,)).chip == "ESP32"


def test_a_bad_profile_reports_every_problem_at_once():
    with pytest.raises(BadInput) as err:
        parse_board('name = "x"\ncpu_mhz = "fast"\n[latency]\nkernels = "esp-nn"\n', "x.toml")
    message = str(err.value)
    for expected in ("x.toml", "'chip' missing", "'cpu_mhz' must be a whole number, got 'fast'", "'platformio' missing",
                     "latency.cycles_per_mac", "'latency.source' missing"):
        assert expected in message


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BadInput, match="unknown board 'esp8266'. Known boards: .*esp32dev"):
        get_board("esp8266")


def test_latency_estimate_is_macs_times_cycles_over_clock():
    board = get_board("esp32-s3-devkitc-1")
    cycles = board.cycles_per_mac["esp-nn"]["CONV_2D"]
    assert board.estimate_us("CONV_2D", 240_000) == pytest.approx(240_000 * cycles / 240)
    assert board.estimate_us("CONV_2D", 240_000, kernels="ansi") > board.estimate_us("CONV_2D", 240_000)
    assert board.estimate_us("SOFTMAX", 0) == 0


def _profile(name: str, **fields) -> str:
    text = open(get_board("esp32dev").path).read().replace('name = "esp32dev"', f'name = "{name}"')
    for key, value in fields.items():
        text = text.replace(f'\n{key} = ', f'\n{key} = {value}\n# was: ', 1)
    return text


def test_every_esp_board_names_its_esptool_chip():
    from tinydeploy.core.boards import ESPTOOL_CHIPS
    for board in load_boards().values():
        if board.toolchain is None:  # flashed over USB, with PlatformIO or esptool
            assert board.esptool_chip in ESPTOOL_CHIPS
            assert board.esptool_chip == board.chip.lower().replace("-", "")  # "ESP32-S3" -> "esp32s3"
    with pytest.raises(BadInput, match="'esptool_chip' is 'esp8266'; accepted: esp32, esp32s2"):
        parse_board(_profile("x", esptool_chip='"esp8266"'), "x.toml")


@pytest.mark.parametrize("name", ["my board", "my/board", "bоard", "-dash", ""])
def test_a_board_name_that_cannot_name_files_and_environments_is_bad_input(name):
    with pytest.raises(BadInput, match="'name' is .*letters, digits"):
        parse_board(_profile(name), "x.toml")


def test_user_profile_folders_come_from_the_environment_and_the_cli(tmp_path, monkeypatch, capsys):
    import json
    from tinydeploy.cli import main
    mine, yours = tmp_path / "mine", tmp_path / "yours"
    mine.mkdir(), yours.mkdir()
    (mine / "lab-board.toml").write_text(_profile("lab-board"))
    (yours / "esp32dev.toml").write_text(_profile("esp32dev").replace("Espressif ESP32", "a local ESP32"))
    monkeypatch.setenv("TINYDEPLOY_BOARDS", str(mine))
    assert "lab-board" in load_boards()
    assert main(["boards", "--json", "--boards-dir", str(yours)]) == 0
    listed = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert "lab-board" in listed
    assert listed["esp32dev"]["path"] == str(yours / "esp32dev.toml")
    assert listed["esp32dev"]["shadows"].endswith("esp32dev.toml") and listed["esp32dev"]["shadows"] != listed["esp32dev"]["path"]
    assert main(["boards", "--boards-dir", str(tmp_path / "none")]) == 2
    assert "--boards-dir " + str(tmp_path / "none") + ": no such folder" in capsys.readouterr().err
    monkeypatch.setenv("TINYDEPLOY_BOARDS", str(tmp_path / "gone"))
    with pytest.raises(BadInput, match=r"\$TINYDEPLOY_BOARDS .*gone: no such folder"):
        load_boards()
