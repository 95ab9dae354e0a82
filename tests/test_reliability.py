"""Every input is checked where it enters and every result can be trusted: one case per class of
the hostile-user probe (bench/probe_cli.py runs them all against every command).

1. a path longer than the file system allows, 2. port URLs, 3. a user's files in --out,
4. two runs on one --out, 5. forged results files, 6. --junit always written,
7. labels, .npz files and --debug."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from tinydeploy.cli import main
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.outputs import LOCK, RECORD, checked_path, claim, locked, run_folder
from tinydeploy.core.ports import check_port
from tinydeploy.core.results_schema import SCHEMA_VERSION, validate

LONG = "n" * 300  # over NAME_MAX (255 bytes) on every Linux file system


def _run(argv, capsys):
    """main(argv + --json): (exit code, the one JSON document on stdout, stderr)."""
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def _results(**fields) -> dict:
    """A results file as bench writes it, with fields changed."""
    return {"schema_version": 1, "port": "socket://127.0.0.1:9", "virtual": False,
            "device": {"board": "esp32dev", "engine": "tflm", "timer": "us", "cpu_mhz": 240},
            "model_sha256": "ab" * 32, "expected_sha256": None, "model_bytes": 16000, "arena_bytes": 4096,
            "arena_used_bytes": 3000, "latency_us": {"runs": 5, "median": 500, "min": 480, "max": 520},
            "latency_instructions": None, "validation": None, "profile": None, "complete": True, "error": None,
            **fields}


# 1. -- a path component longer than NAME_MAX ---------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("argv, option", [
    (["inspect", f"/tmp/{LONG}.tflite"], "model"),
    (["render", "m.tflite", "--board", "esp32dev", "--out", f"{{tmp}}/{LONG}"], "--out"),
    (["render", "m.tflite", "--board", "esp32dev", "--out", "{tmp}/o", "--labels", f"{{tmp}}/{LONG}.txt"], "--labels"),
    (["boards", "--boards-dir", f"{{tmp}}/{LONG}"], "--boards-dir"),
    (["verify", f"{{tmp}}/{LONG}/results.json"], "results"),
    (["calibrate", f"{{tmp}}/{LONG}", "--board", "esp32dev"], "results"),
    (["calibrate", "{tmp}/r.json", "--board", "esp32dev", "--out", f"{{tmp}}/{LONG}"], "--out"),
    (["bench", "--port", "socket://127.0.0.1:9", "--out", f"{{tmp}}/{LONG}"], "--out"),
    (["verify", "{tmp}/r.json", "--junit", f"{{tmp}}/{LONG}.xml"], "--junit"),
    (["optimize", "--data", f"{{tmp}}/{LONG}.npz", "--out", "{tmp}/o"], "--data"),
    (["flash", "--firmware", f"{{tmp}}/{LONG}.bin", "--chip", "esp32s3"], "--firmware"),
])
def test_a_name_longer_than_the_file_system_allows_is_bad_input(argv, option, tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps(_results()))
    code, document, err = _run([a.format(tmp=tmp_path) for a in argv], capsys)
    assert code == 2 and document["exit_code"] == 2, err
    assert document["error"].startswith(f"{option} ") and "NAME_MAX" in document["error"]
    assert "internal error" not in err


@pytest.mark.unit
def test_checked_path_names_each_reason():
    assert checked_path("model.tflite", "model") == "model.tflite" and checked_path(None, "--out") is None
    for value, reason in (("", "is empty"), ("a\0b", "NUL"), ("/tmp/" + "x" * 4100, "NAME_MAX"),
                          ("/".join(["x" * 200] * 25), "PATH_MAX")):
        with pytest.raises(BadInput, match=reason):
            checked_path(value, "--out")


# 2. -- port URLs ----------------------------------------------------------------------------
@pytest.mark.unit
def test_ports_are_checked_where_they_enter(tmp_path, capsys):
    for good in ("/dev/ttyUSB0", "COM3", "socket://127.0.0.1:3333", "rfc2217://host:2217", "hwgrep://303a:1001",
                 "loop://"):
        assert check_port(good) == good
    for bad, reason in (("foo://x", "unknown URL scheme 'foo://'"), ("spy:///dev/ttyUSB0", "unknown URL scheme"),
                        ("socket://host", "needs a host and a port number"),
                        ("socket://host:0", "port number from 1 to 65535"), ("socket://:33", "needs a host"),
                        ("rfc2217://h:99999", "needs a host"), ("", "is empty"), ("  ", "is empty"),
                        ("hwgrep://", "needs a pattern")):
        with pytest.raises(BadInput, match=reason) as error:
            check_port(bad)
        assert "socket://HOST:PORT" in str(error.value) or "needs a" in str(error.value)
    for port in ("foo://x", "socket://host", ""):
        code, document, _ = _run(["bench", f"--port={port}", "--out", str(tmp_path / "b")], capsys)
        assert code == 2 and "--port" in document["error"], port
    farm = tmp_path / "farm.toml"
    farm.write_text('[[board]]\nname = "a"\nport = "socket://h"\n')
    code, document, _ = _run(["bench", "--farm", str(farm), "--out", str(tmp_path / "f")], capsys)
    assert code == 2 and "board 1: port socket://h" in document["error"]
    assert not (tmp_path / "b").exists() and not (tmp_path / "f").exists()  # refused before anything is written


# 3. -- a user's files in --out ----------------------------------------------------------------
@pytest.mark.unit
def test_bench_and_calibrate_never_overwrite_a_users_file(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text("my own results\n")
    code, document, _ = _run(["bench", "--port", "socket://127.0.0.1:9", "--timeout", "1", "--out", str(out)], capsys)
    assert code == 2 and "did not generate: results.json" in document["error"] and "--force" in document["error"]
    assert (out / "results.json").read_text() == "my own results\n"
    code, _, _ = _run(["bench", "--port", "socket://127.0.0.1:9", "--timeout", "1", "--out", str(out), "--force"],
                      capsys)
    assert code == 1 and json.loads((out / "results.json").read_text())["error"]  # --force: written over
    code, _, _ = _run(["bench", "--port", "socket://127.0.0.1:9", "--timeout", "1", "--out", str(out)], capsys)
    assert code == 1  # now tinydeploy's own: the next run writes it again
    assert {"results.json", "serial.log"} <= set(json.loads((out / RECORD).read_text())["files"])

    runs = tmp_path / "r.json"
    runs.write_text(json.dumps(_results(profile={"timer": "us", "layers": [
        {"op": "CONV_2D", "ticks": 100 * n, "work": 1000 * n, "macs": 1000 * n, "outputs": 10} for n in (1, 2, 3)]})))
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "esp32dev.toml").write_text("# my hand-written profile\n")
    code, document, _ = _run(["calibrate", str(runs), "--board", "esp32dev", "--out", str(boards)], capsys)
    assert code == 2 and "did not generate: esp32dev.toml" in document["error"]
    assert (boards / "esp32dev.toml").read_text() == "# my hand-written profile\n"
    code, _, _ = _run(["calibrate", str(runs), "--board", "esp32dev", "--out", str(boards), "--force"], capsys)
    assert code == 0 and "calibrated by tinydeploy" in (boards / "esp32dev.toml").read_text()


@pytest.mark.unit
def test_claim_is_the_one_rule(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    claim(tmp_path, ["a.json"])
    claim(tmp_path, ["a.json"])  # recorded: tinydeploy's to write again
    with pytest.raises(BadInput, match="did not generate: mine.txt"):
        claim(tmp_path, ["a.json", "mine.txt"])
    claim(tmp_path, ["mine.txt"], force=True)
    (tmp_path / "link").symlink_to(tmp_path / "mine.txt")
    with pytest.raises(BadInput, match="is a symlink"):
        claim(tmp_path, ["link"], force=True)  # never written through, whatever force says


@pytest.mark.host
def test_optimize_keeps_a_users_model_before_training(tmp_path, capsys):
    (tmp_path / "model.tflite").write_bytes(b"my model")
    code, document, _ = _run(["optimize", "--data", "digits", "--image-size", "8", "--out", str(tmp_path)], capsys)
    assert code == 2 and "did not generate: model.tflite" in document["error"]
    assert (tmp_path / "model.tflite").read_bytes() == b"my model" and not (tmp_path / "stages").exists()


# 4. -- two runs on one --out ------------------------------------------------------------------
@pytest.mark.unit
def test_a_second_run_on_a_locked_folder_fails_at_once_naming_the_pid(tmp_path, capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from tinydeploy.core.outputs import locked\n"
                               "with locked(Path(sys.argv[1])):\n print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        code, document, _ = _run(["bench", "--port", "socket://127.0.0.1:9", "--out", str(tmp_path)], capsys)
        assert code == 1 and f"is in use by another tinydeploy run (pid {holder.pid})" in document["error"]
        assert str(tmp_path) in document["error"] and time.monotonic() - started < 5
        assert not (tmp_path / "results.json").exists()
    finally:
        holder.kill()
        holder.wait()
    with locked(tmp_path):  # a killed holder's lock goes with it
        pass


@pytest.mark.unit
def test_the_lock_is_released_on_error_and_interrupt(tmp_path):
    for stop in (StepFailed("a step failed"), KeyboardInterrupt()):
        with pytest.raises(type(stop)):
            with run_folder(tmp_path, ["x.json"]):
                raise stop
        assert not (tmp_path / LOCK).exists()
    errors = []

    def second():
        try:
            with locked(tmp_path):
                pass
        except StepFailed as exc:
            errors.append(exc)
    with locked(tmp_path):
        thread = threading.Thread(target=second)  # another thread of the same process is refused too
        thread.start()
        thread.join()
    assert errors and "in use by another tinydeploy run" in str(errors[0])


# 5. -- forged results -------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("change, named", [
    ({"complete": "yes"}, "complete='yes'"),
    ({"latency_us": {"runs": 3, "median": -5.0}}, "latency_us.median=-5.0"),
    ({"arena_used_bytes": -1}, "arena_used_bytes=-1"),
    ({"validation": {"samples": 10, "top1_agreement": 1.5}}, "validation.top1_agreement=1.5"),
    ({"latency_us": {"runs": 3}}, "latency_us.median is missing"),
    ({"device": []}, "device=[]"),
    ({"schema_version": 2}, "schema version 2"),
    ({"profile": {"layers": [{"op": "ADD", "ticks": "many"}]}}, "profile.layers[0].ticks='many'"),
])
def test_forged_results_are_refused_naming_the_field(change, named, tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results(**change)))
    code, document, _ = _run(["verify", str(path), "--max-latency-ms", "100"], capsys)
    assert code == 2 and named in document["error"]


@pytest.mark.unit
def test_results_without_a_version_are_read_as_version_1(tmp_path, capsys):
    old = _results()
    del old["schema_version"]
    (tmp_path / "results.json").write_text(json.dumps(old))
    code, document, _ = _run(["verify", str(tmp_path), "--max-latency-ms", "100"], capsys)
    assert code == 0 and document["met"]
    from tinydeploy.device.bench import BenchResult
    written = BenchResult("socket://x:1", info={"board": "esp32dev", "arena_used_bytes": 10}).to_dict()
    assert written["schema_version"] == SCHEMA_VERSION and validate(written, "bench") is written


# 6. -- --junit always written -------------------------------------------------------------------
def _silent_server():
    """A TCP port that accepts a connection and never says anything (a board that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(4)), daemon=True).start()
    return server, f"socket://127.0.0.1:{server.getsockname()[1]}"


def _cases(path: Path) -> dict[str, str | None]:
    """JUnit test cases: name -> failure message (None when it passed)."""
    root = ET.parse(path).getroot()
    return {case.get("name"): (case.find("failure").get("message") if case.find("failure") is not None else None)
            for case in root.iter("testcase")}


@pytest.mark.unit
def test_junit_is_written_when_the_board_fails(tmp_path, capsys):
    server, silent = _silent_server()
    try:
        for name, port, code_wanted, said in (
                ("refused", "socket://127.0.0.1:9", 1, "Connection refused"),
                ("missing", str(tmp_path / "ttyUSB-none"), 1, "cannot open"),
                ("silent", silent, 1, "no reply to 'name%'"),
                ("bad-url", "foo://x", 2, "unknown URL scheme")):
            junit = tmp_path / f"{name}.xml"
            code, _, _ = _run(["verify", "--port", port, "--timeout", "1", "--out", str(tmp_path / name),
                               "--junit", str(junit)], capsys)
            assert code == code_wanted, name
            cases = _cases(junit)
            assert list(cases) == ["run"] and said in cases["run"], (name, cases)
    finally:
        server.close()


@pytest.mark.unit
def test_farm_junit_has_a_case_per_board(tmp_path, capsys):
    farm = tmp_path / "farm.toml"
    farm.write_text('[[board]]\nname = "a"\nport = "socket://127.0.0.1:9"\nreset = "none"\n\n'
                    '[[board]]\nname = "b"\nport = "socket://127.0.0.1:10"\nreset = "none"\n')
    junit = tmp_path / "farm.xml"
    code, _, _ = _run(["verify", "--farm", str(farm), "--timeout", "1", "--out", str(tmp_path / "o"),
                       "--junit", str(junit)], capsys)
    cases = _cases(junit)
    assert code == 1 and {"a run", "b run"} <= set(cases) and "Connection refused" in cases["a run"]
    farm.write_text('[[board]]\nname = "a"\nport = "nope://1"\n')
    code, _, _ = _run(["verify", "--farm", str(farm), "--out", str(tmp_path / "p"), "--junit", str(junit)], capsys)
    assert code == 2 and "unknown URL scheme" in _cases(junit)["farm"]


@pytest.mark.host
def test_junit_is_written_when_the_board_runs_another_model(int8_cnn, tmp_path, capsys):
    from tests import models
    from tinydeploy.device.virtual_device import VirtualDevice
    other = models.write(tmp_path / "other.tflite", models.with_requantized_output(int8_cnn.read_bytes()))
    with VirtualDevice(int8_cnn) as device:
        code, _, _ = _run(["verify", "--port", device.open_tcp(0), "--expect-model", str(other), "--runs", "2",
                           "--out", str(tmp_path / "o"), "--junit", str(tmp_path / "j.xml")], capsys)
    assert code == 1 and "the device runs a different model" in _cases(tmp_path / "j.xml")["run"]


# 7. -- labels, .npz files, --debug ---------------------------------------------------------------
@pytest.mark.unit
def test_labels_follow_one_rule_where_they_enter(tmp_path):
    from tinydeploy.codegen.render import read_labels
    from tinydeploy.core import data
    x, y = np.zeros((20, 8, 2), np.float32), np.array(["a\nb", "c"] * 10)
    with pytest.raises(BadInput, match=r"one non-empty line of text; not so: label 1 \('a\\nb'\)"):
        data.from_arrays(x, y, None, None, "d")  # what deploy would render
    (tmp_path / "report.json").write_text(json.dumps({"labels": ["a\nb", "c"]}))
    with pytest.raises(BadInput, match=r"not so: label 1 \('a\\nb'\)"):
        read_labels(tmp_path / "report.json")
    assert data.label_problem(["a", "b c", "3"]) is None and "label 2 (' ')" in data.label_problem(["a", " "])


@pytest.mark.unit
def test_npz_files_are_zips_and_sets_come_in_pairs(tmp_path):
    from tinydeploy.core import data
    (tmp_path / "text.npz").write_text("not a zip\n")
    with pytest.raises(BadInput, match="not an .npz file: an .npz is a zip archive"):
        data.load(str(tmp_path / "text.npz"))
    x, y = np.zeros((20, 8, 2), np.float32), np.arange(20) % 2
    np.savez(tmp_path / "half.npz", x_train=x, y_train=y, x_val=x)
    with pytest.raises(BadInput, match="missing arrays y_val"):
        data.load(str(tmp_path / "half.npz"))
    np.savez(tmp_path / "half_test.npz", x_train=x, y_train=y, y_test=y)
    with pytest.raises(BadInput, match="missing arrays x_test"):
        data.load(str(tmp_path / "half_test.npz"))


@pytest.mark.unit
def test_debug_only_adds_the_traceback(tmp_path, capsys):
    code = main(["verify", str(tmp_path / "missing.json"), "--debug"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" in err and err.rstrip().endswith("no such results file (tinydeploy bench "
                                                                       "--out DIR writes DIR/results.json)")


@pytest.mark.unit
def test_an_internal_error_still_gives_one_json_document(monkeypatch, capsys):
    from tinydeploy import api

    def broken(*_):
        raise RuntimeError("a bug")
    monkeypatch.setattr(api, "boards", broken)
    code, document, err = _run(["boards"], capsys)
    assert code == 1 and document == {"error": "internal error: RuntimeError: a bug", "exit_code": 1}
    assert "run with --debug for the traceback" in err
