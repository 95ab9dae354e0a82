"""A board farm benched in parallel (tinydeploy.farm), on virtual devices."""

import json

import pytest

from tinydeploy.errors import BadInput
from tinydeploy.farm import load_farm
from tinydeploy.virtual_device import VirtualDevice
from tests.helpers import run_cli


@pytest.mark.unit
def test_a_bad_farm_file_reports_every_problem_at_once(tmp_path):
    farm = tmp_path / "farm.toml"
    farm.write_text('[[board]]\nname = "a"\nport = "/dev/ttyUSB0"\n\n[[board]]\nname = "a"\nport = ""\n'
                    'reset = "dtr"\ncolour = "red"\n\n[[board]]\nname = "../x"\nport = "socket://h:1"\n')
    with pytest.raises(BadInput) as error:
        load_farm(farm)
    message = str(error.value)
    for part in ("board 2: port ''", "board 2: reset 'dtr' (accepted: rts, none)", "board 2: unknown keys colour",
                 "board 3: name '../x'", "name 'a' is used by 2 boards"):
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
