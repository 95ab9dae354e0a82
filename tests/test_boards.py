import pytest

from tinydeploy.boards import get_board, load_boards, parse_board
from tinydeploy.errors import BadInput

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
    assert 0 < board.cycles_per_mac["c-engine"]["CONV_2D"] and "bench/engines.py" in board.latency_source


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
    for expected in ("x.toml", "'chip' missing", "'cpu_mhz' must be a int", "'platformio' missing",
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
