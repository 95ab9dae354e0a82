import json

import pytest

from tinydeploy import __version__
from tinydeploy.runtime import _tf
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


@pytest.mark.unit
def test_every_command_is_a_python_api_function_of_the_same_name_and_defaults():
    import inspect

    from tinydeploy import api, cli
    from tinydeploy.optimize import STAGES
    from tinydeploy.core.targets import Targets
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    checked = 0
    for name, command in commands.items():
        function = getattr(api, name.replace("-", "_"))
        parameters = inspect.signature(function).parameters
        for action in command._actions:
            default = tuple(action.default) if isinstance(action.default, list) else action.default
            if action.dest == "stages":
                assert tuple(default.split(",")) == STAGES and parameters["stages"].default is None
            elif action.dest.startswith("max_") or action.dest == "rate_hz":
                assert getattr(parameters["targets"].default, action.dest) == getattr(Targets(), action.dest) == default
            elif action.dest in parameters:
                assert parameters[action.dest].default in (default, inspect.Parameter.empty), (name, action.dest)
            else:
                continue
            checked += 1
    assert checked > 60


@pytest.mark.unit
def test_the_library_checks_what_the_cli_checks():
    """Options the CLI's parser checks are checked by the library too, for callers of the API."""
    from tinydeploy.core.boards import get_board
    from tinydeploy.core.errors import BadInput
    from tinydeploy.optimize import OptimizeConfig
    board = get_board("esp32dev")
    with pytest.raises(BadInput, match="unknown budget 'huge'. Budgets: fast, default"):
        OptimizeConfig(data=None, out="x", board=board, budget="huge")
    for bad in (0, 1.5, -0.1):
        with pytest.raises(BadInput, match=r"--min-accuracy is a fraction in \(0, 1\]"):
            OptimizeConfig(data=None, out="x", board=board, min_accuracy=bad)


@pytest.mark.unit
def test_inspect_takes_only_frameworks_that_build_tflm_for_the_board(capsys):
    from tinydeploy import api
    from tinydeploy.cli import main
    from tinydeploy.core.errors import BadInput
    with pytest.raises(BadInput, match="--framework make doesn't build for esp32dev; frameworks for it: espidf, arduino"):
        api.inspect("model.tflite", "esp32dev", framework="make")
    assert main(["inspect", "model.tflite", "--framework", "make"]) == 2
    assert "invalid choice: 'make'" in capsys.readouterr().err
