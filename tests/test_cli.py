import json

import pytest

from tinydeploy import __version__, _tf
from tinydeploy.cli import main

pytestmark = pytest.mark.unit


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"tinydeploy {__version__}"


def test_boards_json(capsys):
    assert main(["boards", "--json"]) == 0
    boards = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert {"esp32dev", "esp32-s3-devkitc-1", "esp32-c3-devkitm-1"} <= set(boards)
    assert boards["esp32-c3-devkitm-1"]["cpu_mhz"] == 160


def test_boards_table(capsys):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert "esp32-s3-devkitc-1" in out and "ESP32-C3" in out


def test_usage_error_exits_2(capsys):
    assert main(["inspect"]) == 2
    assert "the following arguments are required: model" in capsys.readouterr().err


def test_usage_error_gives_json_with_json(capsys):
    assert main(["inspect", "--json"]) == 2
    assert json.loads(capsys.readouterr().out)["exit_code"] == 2


def test_bad_target_value_exits_2(capsys, tmp_path):
    assert main(["inspect", str(tmp_path / "m.tflite"), "--max-arena-kb", "0"]) == 2
    assert "argument --max-arena-kb: 0 is out of range: a positive number of KB" in capsys.readouterr().err


def test_tensorflow_stack_matches_the_pins():
    versions = _tf.check_stack()
    assert versions["tensorflow-cpu"].startswith("2.21.")
    assert versions["tf-keras"].startswith("2.21.")
    assert versions["tensorflow-model-optimization"].startswith("0.8.")
