"""A board farm benched in parallel (tinydeploy.device.farm), on virtual devices."""

import json

import pytest

from tinydeploy.core.errors import BadInput
from tinydeploy.device.farm import load_farm
from tinydeploy.device.virtual_device import VirtualDevice
from tests.helpers import free_port, mock_esp32_bootloader, run_cli


@pytest.mark.unit
def test_a_bad_farm_file_reports_every_problem_at_once(tmp_path):
    farm = tmp_path / "farm.toml"
    farm.write_text('[[board]]\nname = "a"\nport = "/dev/ttyUSB0"\n\n[[board]]\nname = "a"\nport = ""\n'
                    'reset = "dtr"\ncolour = "red"\n\n[[board]]\nname = "../x"\nport = "socket://h:1"\n'
                    '\n[[board]]\nname = "d"\n')
    with pytest.raises(BadInput) as error:
        load_farm(farm)
    message = str(error.value)
    for part in ("board 2: port ''", "board 2: reset 'dtr' (accepted: rts, none)", "board 2: unknown keys colour",
                 "board 3: name '../x'", "board 4: no port (a device path", "name 'a' is used by 2 boards"):
        assert part in message
    with pytest.raises(BadInput, match="no such farm file"):
        load_farm(tmp_path / "none.toml")
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(BadInput, match=r"no \[\[board\]\] tables"):
        load_farm(tmp_path / "empty.toml")


@pytest.mark.host
def test_a_farm_benches_in_parallel_and_a_lost_board_fails_only_its_own_row(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn) as a, VirtualDevice(int8_cnn) as b, \
            VirtualDevice(int8_cnn, stop_after=3) as lost:  # name, info, then silence mid-run
        farm = tmp_path / "farm.toml"
        farm.write_text("".join(f'[[board]]\nname = "{name}"\nport = "{device.open_tcp(0)}"\nreset = "none"\n\n'
                                for name, device in (("a", a), ("b", b), ("lost", lost))))
        done = run_cli("bench", "--farm", str(farm), "--runs", "3", "--timeout", "3", "--expect-model", str(int8_cnn),
                       "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 1 and "1 of 3 boards failed: lost (the other boards' results are kept)" in done.stderr
    summary = json.loads(done.stdout)
    assert json.loads((tmp_path / "out" / "farm.json").read_text()) == summary
    rows = {row["name"]: row for row in summary["boards"]}
    assert rows["a"]["ok"] and rows["b"]["ok"] and not rows["lost"]["ok"] and rows["lost"]["error"].startswith("no reply to ")
    for name in ("a", "b"):
        saved = json.loads((tmp_path / "out" / name / "results.json").read_text())
        assert saved["complete"] and saved["latency_us"]["runs"] == 3
    (aggregate,) = summary["aggregate"]
    assert aggregate["board"] == "virtual" and aggregate["boards"] == 2 and aggregate["spread_us"] >= 0


@pytest.mark.host
def test_verify_judges_every_board_of_several_ports(int8_cnn, tmp_path):
    with VirtualDevice(int8_cnn) as a, VirtualDevice(int8_cnn) as b:
        done = run_cli("verify", "--port", a.open_tcp(0), "--port", b.open_tcp(0), "--runs", "2",
                       "--max-model-kb", "1", "--out", str(tmp_path / "out"), "--json")
    summary = json.loads(done.stdout)
    assert done.returncode == 1 and [row["name"] for row in summary["boards"]] == ["board1", "board2"]
    for row in summary["boards"]:
        verdicts = {v["target"]: v["met"] for v in row["verdicts"]}
        assert verdicts["model"] is False and verdicts["arena"] is True


@pytest.mark.host
def test_the_hil_recipe_runs_on_two_emulated_boards(int8_cnn, tmp_path, rv32_tools):
    """docs/hil-ci.md's recipe, as .github/workflows/hil-emulated.yml runs it: the example suite
    with one emulated board per xdist worker, then verify --farm on both."""
    import subprocess
    import sys
    from pathlib import Path

    from tinydeploy import api
    root = Path(__file__).resolve().parents[1]
    api.render(int8_cnn, "qemu-riscv32", tmp_path / "fw")
    api.build(tmp_path / "fw")
    with api.emulate(tmp_path / "fw") as a, api.emulate(tmp_path / "fw") as b:
        farm = tmp_path / "farm.toml"
        farm.write_text(f'[[board]]\nname = "a"\nport = "{a.url}"\nreset = "none"\n\n'
                        f'[[board]]\nname = "b"\nport = "{b.url}"\nreset = "none"\n')
        suite = subprocess.run([sys.executable, "-m", "pytest", "docs/hil/test_board.py", "-n", "2", "-p",
                                "no:cacheprovider", f"--tinydeploy-farm={farm}", f"--tinydeploy-model={int8_cnn}",
                                f"--junitxml={tmp_path / 'hil.xml'}"], cwd=root, capture_output=True, text=True,
                               timeout=600)
        done = run_cli("verify", "--farm", str(farm), "--expect-model", str(int8_cnn), "--max-latency-ms", "50",
                       "--runs", "3", "--out", str(tmp_path / "farm"), "--json")
    assert suite.returncode == 0, suite.stdout[-3000:]
    assert 'tests="3"' in (tmp_path / "hil.xml").read_text() and 'failures="0"' in (tmp_path / "hil.xml").read_text()
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] and [a["boards"] for a in summary["aggregate"]] == [2]


@pytest.mark.host
def test_a_farm_is_flashed_in_parallel_and_a_dead_port_fails_only_its_own_row(tmp_path):
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\xe9" + bytes(range(256)) * 32)  # an ESP image's magic byte, then anything
    with mock_esp32_bootloader() as a, mock_esp32_bootloader() as b:
        farm = tmp_path / "farm.toml"
        farm.write_text("".join(f'[[board]]\nname = "{name}"\nport = "{port}"\n\n'
                                for name, port in (("a", a), ("b", b), ("dead", f"socket://127.0.0.1:{free_port()}"))))
        done = run_cli("flash", "--farm", str(farm), "--firmware", str(image), "--board", "esp32-s3-devkitc-1",
                       "--out", str(tmp_path / "out"), "--json")
    assert done.returncode == 1 and "1 of 3 boards failed: dead" in done.stderr
    rows = {row["name"]: row for row in json.loads(done.stdout)["boards"]}
    assert rows["a"]["ok"] and rows["b"]["ok"] and "dead" in rows and not rows["dead"]["ok"]
    for name in ("a", "b"):
        assert "Hash of data verified" in (tmp_path / "out" / name / "flash.log").read_text()
    assert json.loads((tmp_path / "out" / "farm.json").read_text())["failed"] == ["dead"]


@pytest.mark.host
def test_a_board_that_cannot_be_flashed_is_not_benched(int8_cnn, tmp_path):
    from tinydeploy.core.boards import get_board
    from tinydeploy.device.farm import FarmBoard, flash_job, flash_then, run, verdicts, verify_job
    from tinydeploy.core.targets import Targets
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\xe9" + bytes(4095))
    with mock_esp32_bootloader() as flashable, VirtualDevice(int8_cnn) as device:
        dead = f"socket://127.0.0.1:{free_port()}"
        job = flash_then(flash_job(image, board_profile=get_board("esp32-s3-devkitc-1")),
                         verify_job(Targets(), 0.99, runs=2, warmup=0, timeout=2, expect_model=int8_cnn))
        rows = run([FarmBoard("dead", dead), FarmBoard("flashed", flashable, reset="none")], tmp_path / "out", job)
        loose = Targets(max_arena_kb=1024, max_model_kb=1024, max_latency_ms=1000)
        benched = run([FarmBoard("device", device.open_tcp(0), reset="none")], tmp_path / "bench",
                      verify_job(loose, 0.99, runs=2, warmup=0, timeout=5, expect_model=int8_cnn))
    dead_row, flashed_row = rows
    assert dead_row.error and dead in dead_row.error and dead_row.verdicts is None
    assert not (tmp_path / "out" / "dead" / "results.json").exists()  # never benched
    # The mock bootloader takes the image, then cannot answer the benchmark protocol: flashed, then failed.
    assert "Hash of data verified" in (tmp_path / "out" / "flashed" / "flash.log").read_text()
    assert flashed_row.error and not flashed_row.ok
    assert benched[0].ok and benched[0].verdicts  # the same verify job on a board that answers
    # deploy --farm's verdicts: every board's, named after it; a failed board is a miss of its own.
    judged = {v.name: v for v in verdicts(rows + benched)}
    assert not judged["dead run"].met and dead in judged["dead run"].detail
    assert not judged["flashed run"].met
    assert judged["device latency"].met and "device run" not in judged


@pytest.mark.host
def test_deploy_to_a_farm_refuses_a_port_and_an_emulated_board_before_training(tmp_path):
    farm = tmp_path / "farm.toml"
    farm.write_text('[[board]]\nname = "a"\nport = "socket://127.0.0.1:1"\n')
    both = run_cli("deploy", "--data", "digits", "--farm", str(farm), "--port", "/dev/ttyUSB0",
                   "--out", str(tmp_path / "x"), timeout=120)
    assert both.returncode == 2 and "give --farm or --port, not both" in both.stderr
    emulated = run_cli("deploy", "--data", "digits", "--board", "qemu-riscv32", "--farm", str(farm),
                       "--out", str(tmp_path / "y"), timeout=120)
    assert emulated.returncode == 2 and "qemu-riscv32 is emulated" in emulated.stderr
    ports = run_cli("deploy", "--data", "digits", "--board", "qemu-riscv32", "--port", "socket://127.0.0.1:1",
                    "--port", "socket://127.0.0.1:2", "--out", str(tmp_path / "z"), timeout=120)
    assert ports.returncode == 2 and "qemu-riscv32 is emulated" in ports.stderr  # several --port: a farm too
    assert not any((tmp_path / name / "optimize").exists() for name in "xyz")
    no_image = run_cli("flash", "--farm", str(farm), "--chip", "esp32s3", timeout=60)
    assert no_image.returncode == 2 and "--farm needs --firmware BIN" in no_image.stderr
