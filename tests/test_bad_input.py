"""Bad input never crashes the CLI: every listed case exits 2 with one line naming the problem
(and a JSON document under --json), and random bad files and option values never give an
internal error, never hang, and never write outside --out."""

import json
import os
import signal
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinydeploy.cli import main

pytestmark = pytest.mark.host


@pytest.fixture(scope="module")
def files(tmp_path_factory, int8_cnn, float_cnn):
    """Bad input files, each wrong in one way, and a few good ones to pair them with."""
    d = tmp_path_factory.mktemp("bad")

    def npz(name, **arrays):
        np.savez(d / name, **arrays)
        return str(d / name)

    def text(name, content, encoding="utf-8"):
        (d / name).write_bytes(content.encode(encoding) if isinstance(content, str) else content)
        return str(d / name)

    x = np.random.default_rng(0).random((20, 16, 2)).astype(np.float32)
    y = np.arange(20) % 2
    results = {"device": {}, "complete": True, "arena_used_bytes": "lots", "model_bytes": 100}
    return {
        "model": str(int8_cnn), "float_model": str(float_cnn),
        "nan_labels": npz("nan_labels.npz", x_train=x, y_train=np.where(y == 0, np.nan, 1.0)),
        "object": npz("object.npz", x_train=np.array([x[0], "a"], dtype=object), y_train=y[:2]),
        "zero_d": npz("zero_d.npz", x_train=np.float32(3), y_train=np.int64(1)),
        "complex": npz("complex.npz", x_train=x.astype(np.complex64), y_train=y),
        "no_steps": npz("no_steps.npz", x_train=np.zeros((20, 0, 2), np.float32), y_train=y),
        "fraction_labels": npz("fraction_labels.npz", x_train=x, y_train=y + 0.5),
        "latin1_csv": text("latin1.csv", "label,a_0\ncaf\xe9,1.0\nthé,2.0\n", "latin-1"),
        "no_label_csv": text("no_label.csv", "label,a_0,a_1\n1,0.5,0.5\n,0.1,0.2\n2,0.3,0.3\n"),
        "extra_cells_csv": text("extra.csv", "label,a_0,a_1\n1,0.5,0.5,9\n2,0.1,0.2\n"),
        "labels_number": text("labels_number.json", "5"),
        "labels_null": text("labels_null.json", "null"),
        "labels_latin1": text("labels.txt", b"caf\xe9\n"),
        "arch_latin1": text("arch_latin1.json", b'{"blocks": "\xff"}'),
        "arch_list": text("arch_list.json", "[1, 2]"),
        "arch_types": text("arch_types.json", '{"blocks": [{"filters": "many"}]}'),
        "results_text_figure": text("results.json", json.dumps(results)),
        "empty_bin": text("empty.bin", b""),
        "text_bin": text("notes.bin", "firmware? no\n"),
        "corrupt_model": text("corrupt.tflite", b"\x1c\0\0\0TFL3" + bytes(range(256)) * 4),
        "a_file": text("a_file.txt", "x"),
        "dir": str(d),
    }


def _port_in_use():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


CASES = {
    "bench --baud 0": ["bench", "--port", "socket://127.0.0.1:1", "--baud", "0"],
    "bench --timeout nan": ["bench", "--port", "socket://127.0.0.1:1", "--timeout", "nan"],
    "bench --timeout -1": ["bench", "--port", "socket://127.0.0.1:1", "--timeout", "-1"],
    "bench --runs 0": ["bench", "--port", "socket://127.0.0.1:1", "--runs", "0"],
    "bench --out ''": ["bench", "--port", "socket://127.0.0.1:1", "--out", ""],
    "render --out ''": ["render", "{model}", "--board", "esp32dev", "--out", ""],
    "render --out a file": ["render", "{model}", "--board", "esp32dev", "--out", "{a_file}"],
    "render --out through a file": ["render", "{model}", "--board", "esp32dev", "--out", "{a_file}/sub"],
    "render --out /proc": ["render", "{model}", "--board", "esp32dev", "--out", "/proc/tinydeploy-x"],
    "render --labels 5": ["render", "{model}", "--board", "esp32dev", "--out", "{out}", "--labels", "{labels_number}"],
    "render --labels null": ["render", "{model}", "--board", "esp32dev", "--out", "{out}", "--labels",
                             "{labels_null}"],
    "render --labels latin-1": ["render", "{model}", "--board", "esp32dev", "--out", "{out}", "--labels",
                                "{labels_latin1}"],
    "render c engine --labels": ["render", "{model}", "--board", "esp32-c3-devkitm-1", "--engine", "c", "--out",
                                 "{out}", "--labels", "{labels_latin1}"],
    "render qemu --framework": ["render", "{model}", "--board", "qemu-riscv32", "--framework", "arduino",
                                "--out", "{out}"],
    "render --board nosuch": ["render", "{model}", "--board", "nosuch", "--out", "{out}"],
    "render --arena-margin -5": ["render", "{model}", "--board", "esp32dev", "--out", "{out}", "--arena-margin", "-5"],
    "render a corrupt model": ["render", "{corrupt_model}", "--board", "esp32dev", "--out", "{out}"],
    "inspect a corrupt model": ["inspect", "{corrupt_model}"],
    "flash --offset zzz": ["flash", "--firmware", "{text_bin}", "--chip", "esp32s3", "--offset", "zzz"],
    "flash an empty image": ["flash", "--firmware", "{empty_bin}", "--chip", "esp32s3"],
    "flash a text file": ["flash", "--firmware", "{text_bin}", "--chip", "esp32s3"],
    "virtual-device --tcp 99999": ["virtual-device", "{model}", "--tcp", "99999"],
    "virtual-device a port in use": ["virtual-device", "{model}", "--tcp", "{busy_port}"],
    "virtual-device a float model": ["virtual-device", "{float_model}", "--tcp", "0"],
    "verify a text figure": ["verify", "{results_text_figure}"],
    "verify --junit into a missing folder": ["verify", "{results_text_figure}", "--junit", "{dir}/no/such/x.xml"],
    "optimize NaN labels": ["optimize", "--data", "{nan_labels}", "--out", "{out}"],
    "optimize an object array": ["optimize", "--data", "{object}", "--out", "{out}"],
    "optimize a 0-d array": ["optimize", "--data", "{zero_d}", "--out", "{out}"],
    "optimize complex values": ["optimize", "--data", "{complex}", "--out", "{out}"],
    "optimize (N, 0, C)": ["optimize", "--data", "{no_steps}", "--out", "{out}"],
    "optimize fractional labels": ["optimize", "--data", "{fraction_labels}", "--out", "{out}"],
    "optimize a latin-1 csv": ["optimize", "--data", "{latin1_csv}", "--out", "{out}"],
    "optimize a csv row without label": ["optimize", "--data", "{no_label_csv}", "--out", "{out}"],
    "optimize a csv row with extra cells": ["optimize", "--data", "{extra_cells_csv}", "--out", "{out}"],
    "optimize --arch latin-1": ["optimize", "--data", "digits", "--out", "{out}", "--arch", "{arch_latin1}"],
    "optimize --arch a list": ["optimize", "--data", "digits", "--out", "{out}", "--arch", "{arch_list}"],
    "optimize --arch wrong types": ["optimize", "--data", "digits", "--out", "{out}", "--arch", "{arch_types}"],
    "optimize --min-accuracy 2": ["optimize", "--data", "digits", "--out", "{out}", "--min-accuracy", "2"],
    "search --show a list": ["search", "--show", "{arch_list}"],
    "evaluate --image-size 0": ["evaluate", "{model}", "--data", "digits", "--image-size", "0"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_and_json(case, files, tmp_path, capsys):
    busy = _port_in_use()
    try:
        values = {**files, "out": str(tmp_path / "out"), "busy_port": str(busy.getsockname()[1])}
        argv = [arg.format(**values) for arg in CASES[case]] + ["--json"]
        code = main(argv)
    finally:
        busy.close()
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, f"{case}: exit {code}: {captured.err}"
    assert len(lines) == 1 and lines[0].startswith("tinydeploy: error: ") and "internal error" not in lines[0]
    assert json.loads(captured.out)["exit_code"] == 2


# -- fuzzing -------------------------------------------------------------------------------
@contextmanager
def _time_limit(seconds: int):
    def expired(*_):
        raise TimeoutError(f"the command ran longer than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _run_sandboxed(tmp_path: Path, argv: list[str], capsys) -> None:
    """Run argv in an empty folder; nothing may crash, hang, or write outside OUT."""
    sandbox = tmp_path / "cwd"
    sandbox.mkdir()
    before = _tree(tmp_path)
    old = os.getcwd()
    os.chdir(sandbox)
    try:
        with _time_limit(60):
            code = main([*argv, "--json"])
    finally:
        os.chdir(old)
    captured = capsys.readouterr()
    assert "internal error" not in captured.err, f"{argv}: {captured.err}"
    assert code in (0, 1, 2), argv
    assert isinstance(json.loads(captured.out), (dict, list)), argv
    written = {p for p in _tree(tmp_path) - before if not p.startswith("out") and p != "cwd"}
    assert not written, f"{argv} wrote outside --out: {sorted(written)}"


def _flipped(data: bytes, positions: list[int], values: list[int]) -> bytes:
    out = bytearray(data)
    for at, value in zip(positions, values):
        out[at % len(out)] = value
    return bytes(out)


MODEL_DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8),
              st.lists(st.integers(0, 255), min_size=8, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 4000), st.none()),
    st.tuples(st.just("random"), st.binary(max_size=300), st.none()),
)


def _damaged_model(original: bytes, damage) -> bytes:
    kind, a, b = damage
    if kind == "flip":
        return _flipped(original, a, b)
    if kind == "truncate":
        return original[:a]
    return b"\x1c\0\0\0TFL3" + a


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=MODEL_DAMAGE, command=st.sampled_from(["inspect", "render-tflm", "render-c", "evaluate"]))
def test_damaged_models_never_crash(tmp_path_factory, capsys, int8_cnn, damage, command):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    model = tmp_path / "m.tflite"
    model.write_bytes(_damaged_model(int8_cnn.read_bytes(), damage))
    argv = {"inspect": ["inspect", str(model)],
            "render-tflm": ["render", str(model), "--board", "esp32dev", "--out", str(tmp_path / "out")],
            "render-c": ["render", str(model), "--board", "qemu-riscv32", "--out", str(tmp_path / "out")],
            "evaluate": ["evaluate", str(model), "--data", "digits"]}[command]
    _run_sandboxed(tmp_path, argv, capsys)


ARRAYS = st.sampled_from([
    np.zeros((0,), np.float32), np.full((6, 4, 2), np.nan, np.float32), np.ones((6, 4), np.float32),
    np.ones((6, 4, 2, 2, 2), np.float32), np.array(["a", "b", "c", "d", "e", "f"]), np.ones((6, 4, 2), np.complex64),
    np.ones((6, 0, 2), np.float32), np.float32(1.0), np.ones((6, 4, 2), bool), np.full((6, 4, 2), np.inf, np.float32),
])
LABELS = st.sampled_from([
    np.array([0, 1, 0, 1, 0, 1]), np.array([0.5] * 6), np.array([np.nan] * 6), np.array(["", "a", "b", "a", "b", "a"]),
    np.array([0, 0, 0, 0, 0, 0]), np.array([0, 1]), np.zeros((6, 2)), np.int64(3),
])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=ARRAYS, y=LABELS, csv=st.binary(max_size=200), kind=st.sampled_from(["npz", "csv", "test"]),
       command=st.sampled_from(["optimize", "evaluate", "search"]))
def test_bad_data_never_crashes(tmp_path_factory, capsys, int8_cnn, x, y, csv, kind, command):
    tmp_path = tmp_path_factory.mktemp("fuzz")
    if kind == "csv":
        data = tmp_path / "d.csv"
        data.write_bytes(b"label,a_0,a_1\n" + csv)
    else:
        data = tmp_path / "d.npz"
        np.savez(data, x_train=x, y_train=y)
    out = str(tmp_path / "out")
    if kind == "test":  # good training data, a bad --test set
        argv = ["optimize", "--data", "digits", "--image-size", "8", "--test", str(data), "--out", out]
    else:
        argv = {"optimize": ["optimize", "--data", str(data), "--out", out, "--budget", "fast", "--stages", "arch"],
                "evaluate": ["evaluate", str(int8_cnn), "--data", str(data)],
                "search": ["search", "--data", str(data), "--out", out, "--trials", "1"]}[command]
    _run_sandboxed(tmp_path, argv, capsys)


OPTION_VALUES = st.one_of(st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "", " ", "0x10", "zzz", "99999",
                                           "1.5", "-0", "\x00", "1" * 40]), st.text(max_size=8))
NUMERIC_OPTIONS = [
    ("bench", "--baud"), ("bench", "--timeout"), ("bench", "--runs"), ("bench", "--warmup"), ("bench", "--validate"),
    ("render", "--arena-margin"), ("inspect", "--max-arena-kb"), ("inspect", "--max-latency-ms"),
    ("optimize", "--min-accuracy"), ("optimize", "--seed"), ("optimize", "--image-size"), ("verify", "--min-agreement"),
    ("flash", "--offset"), ("virtual-device", "--tcp"), ("virtual-device", "--baud"), ("search", "--trials"),
    ("search", "--timeout"),
]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(NUMERIC_OPTIONS), value=OPTION_VALUES)
def test_odd_option_values_never_crash(tmp_path_factory, capsys, int8_cnn, option, value):
    """Every value is either refused at parsing (exit 2, naming it) or used without a crash."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    command, name = option
    out = str(tmp_path / "out")
    base = {"bench": ["bench", "--port", "socket://127.0.0.1:1", "--out", out, "--timeout", "1"],
            "render": ["render", str(int8_cnn), "--board", "esp32dev", "--out", out],
            "inspect": ["inspect", str(int8_cnn)],
            "optimize": ["optimize", "--data", str(tmp_path / "missing.npz"), "--out", out],
            "verify": ["verify", str(tmp_path / "missing.json")],
            "flash": ["flash", "--firmware", str(tmp_path / "missing.bin"), "--chip", "esp32s3"],
            "virtual-device": ["virtual-device", str(tmp_path / "missing.tflite")],
            "search": ["search", "--data", str(tmp_path / "missing.npz"), "--out", out]}[command]
    _run_sandboxed(tmp_path, [*base, f"{name}={value}"], capsys)


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(["blocks", "labels", "device", "latency_us", "median",
                                                             "kind", "filters", "kernel", "stride", "validation",
                                                             "arena_used_bytes", "complete", "head_units"]),
                                            inner, max_size=5)),
    max_leaves=12)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=JSON_VALUES, raw=st.one_of(st.none(), st.binary(max_size=40)),
       command=st.sampled_from(["verify", "arch", "show", "labels"]))
def test_odd_json_files_never_crash(tmp_path_factory, capsys, int8_cnn, value, raw, command):
    """Results, architecture and label files holding any JSON (or not JSON at all)."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    path = tmp_path / "f.json"
    path.write_bytes(raw if raw is not None else json.dumps(value).encode())
    out = str(tmp_path / "out")
    argv = {"verify": ["verify", str(path)],
            "arch": ["optimize", "--data", str(tmp_path / "missing.npz"), "--arch", str(path), "--out", out],
            "show": ["search", "--data", "digits", "--image-size", "8", "--show", str(path)],
            "labels": ["render", str(int8_cnn), "--board", "esp32dev", "--out", out, "--labels", str(path)]}[command]
    _run_sandboxed(tmp_path, argv, capsys)
