"""Bad input never crashes the CLI: every listed case exits 2 with one line naming the problem
(and a JSON document under --json), and random bad files and option values never give an
internal error, never hang, and never write outside --out."""

import json
import os
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from flatbuffers import Builder
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

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


@contextmanager
def _stopped_once_serving(port_file: Path | None):
    """For virtual-device, which serves until SIGTERM: once it has written its port file, send
    SIGTERM (again until it returns: its handler is set just after the file), as a service
    manager would; its handler is taken away afterwards."""
    if port_file is None:
        yield
        return
    done = threading.Event()

    def watch():
        while not done.is_set() and not (port_file.exists() and port_file.read_text().strip()):
            done.wait(0.02)
        while not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            done.wait(0.2)

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        signal.signal(signal.SIGTERM, previous)


def _run_sandboxed(tmp_path: Path, argv: list[str], capsys, port_file: Path | None = None) -> tuple[int, dict]:
    """Run argv in an empty folder; nothing may crash, hang, or write outside OUT. Returns the exit
    code and the JSON document."""
    sandbox = tmp_path / "cwd"
    sandbox.mkdir()
    before = _tree(tmp_path)
    old = os.getcwd()
    os.chdir(sandbox)
    try:
        with _time_limit(300), _stopped_once_serving(port_file):  # above the TFLM child's own 120 s
            code = main([*argv, "--json"])
    finally:
        os.chdir(old)
    captured = capsys.readouterr()
    assert "internal error" not in captured.err, f"{argv}: {captured.err}"
    assert code in (0, 1, 2), argv
    document = json.loads(captured.out)
    assert isinstance(document, (dict, list)), argv
    written = {p for p in _tree(tmp_path) - before if not p.startswith("out") and p != "cwd" and p != "port"}
    assert not written, f"{argv} wrote outside --out: {sorted(written)}"
    return code, document


def _flipped(data: bytes, positions: list[int], values: list[int]) -> bytes:
    out = bytearray(data)
    for at, value in zip(positions, values):
        out[at % len(out)] = value
    return bytes(out)


def _edited(data: bytes, edit) -> bytes:
    """The model with fields changed through TFLite's schema: edit(model_t) changes them."""
    model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(data), 0)
    edit(model_t)
    builder = Builder(len(data) + 4096)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


ODD_VALUES = [-2, -1, 0, 1, 2, 3, 7, 10, 64, 1000, (1 << 31) - 1]
FIELDS = ["shape", "type", "buffer", "op-input", "op-output", "opcode-index", "scales", "zero-points",
          "quantized-dimension", "graph-output", "drop-op", "option"]


def _field_edit(field: str, which: int, value: int):
    """One structural damage: `field` of the tensor or operator `which` (modulo their count) set
    to an odd value (for lists, one entry of it; for a shape, a negative value drops a dimension)."""
    def edit(model_t):
        graph = model_t.subgraphs[0]
        tensor = graph.tensors[which % len(graph.tensors)]
        op = graph.operators[which % len(graph.operators)]
        if field == "shape":
            shape = [int(d) for d in tensor.shape]  # a negative value drops a dimension
            tensor.shape = [d for i, d in enumerate(shape) if i != which % max(len(shape), 1)] if value < 0 else \
                [value if i == which % max(len(shape), 1) else d for i, d in enumerate(shape)]
        elif field == "type":
            tensor.type = value % 20
        elif field == "buffer":
            tensor.buffer = value % (1 << 32)
        elif field in ("op-input", "op-output"):
            attr = "inputs" if field == "op-input" else "outputs"
            values = [int(i) for i in getattr(op, attr)]
            values[which % len(values)] = value
            setattr(op, attr, values)
        elif field == "opcode-index":
            op.opcodeIndex = value % (1 << 32)
        elif field in ("scales", "zero-points", "quantized-dimension") and tensor.quantization is not None:
            q = tensor.quantization
            if field == "scales":
                q.scale = [float(v) for v in q.scale][:max(value, 0)] + [float(value)] * (value < 0)
            elif field == "zero-points":
                q.zeroPoint = [int(z) for z in q.zeroPoint][:max(value, 0)] + [value * 100] * (value < 0)
            else:
                q.quantizedDimension = value
        elif field == "graph-output":
            graph.outputs = [value]
        elif field == "drop-op":
            del graph.operators[which % len(graph.operators)]
        elif field == "option" and op.builtinOptions is not None:
            names = sorted(vars(op.builtinOptions))
            setattr(op.builtinOptions, names[which % len(names)], value % 256 if value < 0 else value)
    return edit


MODEL_DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.integers(0, 1 << 20), min_size=1, max_size=8),
              st.lists(st.integers(0, 255), min_size=8, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 4000), st.none()),
    st.tuples(st.just("random"), st.binary(max_size=300), st.none()),
    st.tuples(st.just("field"), st.tuples(st.sampled_from(FIELDS), st.integers(0, 100)), st.sampled_from(ODD_VALUES)),
)


def _damaged_model(original: bytes, damage) -> bytes:
    kind, a, b = damage
    if kind == "flip":
        return _flipped(original, a, b)
    if kind == "truncate":
        return original[:a]
    if kind == "field":
        return _edited(original, _field_edit(a[0], a[1], b))
    return b"\x1c\0\0\0TFL3" + a


@pytest.fixture(scope="module")
def good_device(int8_cnn):
    """A virtual device serving the good model, for bench runs whose damaged model it can't serve."""
    from tinydeploy import api
    device = api.virtual_device(int8_cnn)
    device.open_tcp(0)
    yield device
    device.close()


MODEL_COMMANDS = ["inspect", "render-tflm", "render-c", "evaluate", "virtual-device", "bench"]


def _run_model_command(command: str, model: Path, tmp_path: Path, capsys, good_device) -> tuple[int, dict]:
    """One command that reads a model, run on it in a sandbox (_run_sandboxed); bench runs against
    a virtual device serving the model, or the good one where it can't be served."""
    out = str(tmp_path / "out")
    if command == "virtual-device":
        port_file = tmp_path / "port"
        return _run_sandboxed(tmp_path, ["virtual-device", str(model), "--tcp", "0", "--port-file", str(port_file)],
                              capsys, port_file=port_file)
    if command == "bench":
        from tinydeploy import api
        from tinydeploy.core.errors import BadInput
        try:
            device = api.virtual_device(model)
            url = device.open_tcp(0)
        except BadInput:
            device, url = None, good_device.address
        try:
            return _run_sandboxed(tmp_path, ["bench", "--port", url, "--expect-model", str(model), "--runs", "1",
                                             "--warmup", "0", "--validate", "2", "--data", "digits", "--profile",
                                             "--timeout", "10", "--out", out], capsys)
        finally:
            if device is not None:
                device.close()
    argv = {"inspect": ["inspect", str(model)],
            "render-tflm": ["render", str(model), "--board", "esp32dev", "--engine", "tflm", "--out", out],
            "render-c": ["render", str(model), "--board", "qemu-riscv32", "--engine", "c", "--out", out],
            "evaluate": ["evaluate", str(model), "--data", "digits"]}[command]
    return _run_sandboxed(tmp_path, argv, capsys)


# Crashes the fuzzing found, pinned (each ended as an internal error before the fix): the pooled
# tensor cut to rank 3 (IndexError: tuple index out of range, in inspect), an operator dropped
# (KeyError: a tensor read but never written, in the C engine's plan).
@example(damage=("field", ("shape", 10), -1), command="inspect")
@example(damage=("field", ("drop-op", 4), 0), command="render-c")
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damage=MODEL_DAMAGE, command=st.sampled_from(MODEL_COMMANDS))
def test_damaged_models_never_crash(tmp_path_factory, capsys, int8_cnn, good_device, damage, command):
    """Every command that reads a model ends a damaged one with exit 0, 1 or 2, never an internal error."""
    tmp_path = tmp_path_factory.mktemp("fuzz")
    model = tmp_path / "m.tflite"
    model.write_bytes(_damaged_model(int8_cnn.read_bytes(), damage))
    _run_model_command(command, model, tmp_path, capsys, good_device)


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


# -- the crashes found, one per kind, each with the field it names -----------------------------
def _shape(index: int, shape: list[int]):
    def edit(model_t):
        model_t.subgraphs[0].tensors[index].shape = shape
    return edit


def _both(*edits):
    def edit(model_t):
        for one in edits:
            one(model_t)
    return edit


def _no_pool_options(model_t):
    op = model_t.subgraphs[0].operators[1]
    op.builtinOptions, op.builtinOptionsType = None, 0


def _quantized_dimension(index: int, axis: int):
    def edit(model_t):
        model_t.subgraphs[0].tensors[index].quantization.quantizedDimension = axis
    return edit


def _input_index(op: int, position: int, index: int):
    def edit(model_t):
        inputs = [int(i) for i in model_t.subgraphs[0].operators[op].inputs]
        inputs[position] = index
        model_t.subgraphs[0].operators[op].inputs = inputs
    return edit


def _op_code(op: int, builtin: int):
    def edit(model_t):
        code = model_t.operatorCodes[model_t.subgraphs[0].operators[op].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = builtin
    return edit


# int8_cnn: tensors 0 input, 5 depthwise weights, 8 conv weights, 10 pooled, 12 conv out, 14 dense
# out, 15 softmax out; operators CONV_2D, MAX_POOL_2D, DEPTHWISE_CONV_2D, CONV_2D, MEAN,
# FULLY_CONNECTED, SOFTMAX. Each case ended as an internal error before (the error it raised).
DAMAGED = {
    "pooled output of rank 3 (IndexError in inspect's ESP-NN scratch)": (
        _shape(10, [1, 15, 8]), "inspect",
        "operator 1 (MAX_POOL_2D) output 0: tensor 10 has shape [1, 15, 8]; MAX_POOL_2D takes rank 4"),
    "an operator removed (KeyError in the C engine's plan)": (
        lambda m: m.subgraphs[0].operators.pop(4), "render-c",
        "operator 4 (FULLY_CONNECTED) input 0: tensor 13 'sequential/global_average_pooling2d/Mean' is read "
        "before any operator writes it"),
    "depthwise weights of rank 3 (ValueError unpacking them)": (
        _both(_shape(5, [3, 3, 8]), _quantized_dimension(5, 2)), "render-c",
        "operator 2 (DEPTHWISE_CONV_2D) input 1: tensor 5 has shape [3, 3, 8]; DEPTHWISE_CONV_2D takes rank 4"),
    "weights whose shape outgrows their buffer (ValueError reshaping them)": (
        _shape(8, [8, 3, 3, 2]), "render-c",
        "tensor 8 'sequential/conv2d/Conv2D': buffer 9 holds 72 bytes but shape [8, 3, 3, 2] of int8 needs 144"),
    "a softmax input of rank 0 (IndexError in lowering)": (
        _shape(14, []), "render-c", "operator 6 (SOFTMAX) input 0: tensor 14 has shape []; SOFTMAX takes rank 1 to 8"),
    "an empty softmax (ZeroDivisionError in lowering)": (
        _both(_shape(14, [1, 0]), _shape(15, [1, 0])), "render-c",
        "operator 5 (FULLY_CONNECTED): output 0 'sequential/dense/MatMul2' has shape [1, 0], which holds no values"),
    "an empty tensor before the mean (ValueError planning it)": (
        _shape(12, [1, 0, 13, 16]), "render-c",
        "operator 3 (CONV_2D): output 0 'sequential/conv2d_1/Relu;sequential/conv2d_1/Conv2D' has shape "
        "[1, 0, 13, 16], which holds no values"),
    "pooling without its options (KeyError 'filter_h')": (
        _no_pool_options, "render-c", "operator 1 (MAX_POOL_2D): padding None; TFLite has SAME and VALID"),
    "a tensor index out of range": (
        _input_index(5, 1, 57), "evaluate",
        "operator 5 (FULLY_CONNECTED) input 1: tensor index 57 out of range (model has 16 tensors)"),
    "a negative tensor index other than -1 (read the last tensor instead)": (
        _input_index(5, 1, -3), "inspect",
        "operator 5 (FULLY_CONNECTED) input 1: tensor index -3 out of range (model has 16 tensors)"),
    "per-channel scales on the wrong axis": (
        _quantized_dimension(5, 1), "virtual-device",
        "tensor 5 'sequential/depthwise_conv2d/depthwise': 8 per-channel scales on axis 1 of shape [1, 3, 3, 8]"),
    "the depthwise layer's code made ARG_MAX (JSONDecodeError on TFLM's failed report)": (
        _op_code(2, 56), "render-tflm", "TFLM failed running it on zeros"),
    "an infinite scale (code rendered from it before)": (
        lambda m: setattr(m.subgraphs[0].tensors[14].quantization, "scale", [float("inf")]), "render-c",
        "tensor 14 'sequential/dense/MatMul2': quantization scale inf is not in 1e-30..1e+30"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_model_exits_2_naming_the_field(case, tmp_path, capsys, int8_cnn, good_device):
    edit, command, message = DAMAGED[case]
    model = tmp_path / "m.tflite"
    model.write_bytes(_edited(int8_cnn.read_bytes(), edit))
    code, document = _run_model_command(command, model, tmp_path, capsys, good_device)
    assert code == 2
    assert message in document["error"]


def test_a_hung_tflm_child_is_ended_and_counted_as_a_crash(tmp_path, monkeypatch):
    """A damaged model can send TFLM's kernels looping: the request times out, the child is
    killed, and the probe counts as a failure (measure_arena then says the model is corrupt)."""
    import subprocess
    import sys
    import time
    from tinydeploy.runtime import tflm
    process = tflm.TflmProcess(b"", "the model")
    monkeypatch.setattr(process, "ANSWER_TIMEOUT", 0.5)
    monkeypatch.setattr(process, "_start", lambda: setattr(process, "_child", subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)))
    started = time.monotonic()
    try:
        assert not process.accepts(4096)
        assert process.crashes == 1 and process._child is None
        assert time.monotonic() - started < 10
    finally:
        process.close()


def test_data_labels_that_look_like_numbers_but_are_not(tmp_path, capsys, int8_cnn):
    """'²' is a digit to str.isdigit() but not a number to int(): the labels stay names (a
    ValueError before), and validation labels written as text match numeric training labels
    (a KeyError before)."""
    csv = tmp_path / "d.csv"
    csv.write_text("label,a_0,a_1\n²,0.5,0.5\n²,0.1,0.2\n3,0.3,0.3\n3,0.1,0.1\n", encoding="utf-8")
    code, document = _run_sandboxed(tmp_path, ["evaluate", str(int8_cnn), "--data", str(csv)], capsys)
    assert code == 2 and "the data has 2 classes (3, ²)" in document["error"]
    npz = tmp_path / "v.npz"
    x = np.random.default_rng(0).random((20, 32, 32, 1)).astype(np.float32)
    np.savez(npz, x_train=x, y_train=np.arange(20) % 10, x_val=x[:10], y_val=np.array([str(i) for i in range(10)]))
    assert main(["evaluate", str(int8_cnn), "--data", str(npz), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 10


BOARD_DAMAGE = {
    "cycles_per_mac": ("[latency.cycles_per_mac.c-engine]", "cycles_per_mac = 5", "'latency.cycles_per_mac' must be"),
    "engines": ('engines = ["c"]', "engines = 5", "'engines' must be a list of strings"),
    "cpu_mhz": ("cpu_mhz = 160", "cpu_mhz = 0", "'cpu_mhz' is a CPU clock in MHz, 1..1000, got 0"),
    "source": ('source = "', 'source = 5\nold_source = "', "'latency.source' must be a string"),
}


@pytest.mark.parametrize("field", sorted(BOARD_DAMAGE))
def test_a_board_profile_with_a_field_of_the_wrong_type_exits_2_naming_it(field, tmp_path, capsys, int8_cnn):
    """A user's board profile is data: a number where a table belongs (AttributeError before),
    or a clock of 0 MHz (ZeroDivisionError), is a message naming the field."""
    from tinydeploy.core.resources import shipped
    old, new, message = BOARD_DAMAGE[field]
    text = (Path(shipped("boards")) / "qemu-riscv32.toml").read_text()
    assert old in text
    if field == "cycles_per_mac":  # the table's lines become keys of [latency]
        text = text.replace(old, "").replace("[latency]", f"[latency]\n{new}")
    else:
        text = text.replace(old, new, 1)
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "broken.toml").write_text(text.replace('name = "qemu-riscv32"', 'name = "broken"'))
    assert main(["inspect", str(int8_cnn), "--board", "broken", "--boards-dir", str(boards)]) == 2
    assert message in capsys.readouterr().err


# -- issue 29, class 5: a user's board profile is checked where it enters ----------------------------
def _profile(base: str, name: str, *changes: tuple[str, str]) -> str:
    """A shipped profile renamed, with lines changed (each old text must be there)."""
    from tinydeploy.core.resources import shipped
    text = (Path(shipped("boards")) / f"{base}.toml").read_text(encoding="utf-8")
    text = text.replace(f'name = "{base}"', f'name = "{name}"', 1)
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


HOSTILE_PROFILE_VALUES = {  # case: (base profile, change, the key named, what is accepted)
    "clock zero": ("esp32dev", ("cpu_mhz = 240", "cpu_mhz = 0"), "'cpu_mhz'", "1..1000"),
    "clock negative": ("esp32dev", ("cpu_mhz = 240", "cpu_mhz = -240"), "'cpu_mhz'", "1..1000"),
    "clock absurd": ("esp32dev", ("cpu_mhz = 240", "cpu_mhz = 240000000"), "'cpu_mhz'", "1..1000"),
    "cycles NaN": ("esp32dev", ("FULLY_CONNECTED = 12.74", "FULLY_CONNECTED = nan"),
                   "'latency.cycles_per_mac.esp-nn.FULLY_CONNECTED'", "0..1e+06"),
    "cycles negative": ("esp32dev", ("FULLY_CONNECTED = 12.74", "FULLY_CONNECTED = -12.74"),
                        "'latency.cycles_per_mac.esp-nn.FULLY_CONNECTED'", "0..1e+06"),
    "cycles inf": ("qemu-riscv32", ("SOFTMAX = 251.0", "SOFTMAX = inf"), "'latency.cycles_per_op.c-engine.SOFTMAX'",
                   "0..1e+09"),
    "baud zero": ("esp32dev", ("baud = 115200", "baud = 0"), "'serial.baud'", "1..20000000"),
    "baud absurd": ("esp32dev", ("fast_baud = 921600", "fast_baud = 921600000"), "'serial.fast_baud'", "1..20000000"),
    "arena budget absurd": ("esp32dev", ("arena_budget_kb = 128", "arena_budget_kb = 1000000000"),
                            "'arena_budget_kb'", "1..65536"),
    "power negative": ("esp32dev", ("active_ma = 50.0", "active_ma = -50.0"), "'power.active_ma'", "above 0"),
    "power NaN": ("esp32dev", ("supply_v = 3.3", "supply_v = nan"), "'power.supply_v'", "finite"),
    "newline into platformio.ini": ("esp32dev", ('board = "esp32dev"', 'board = "esp32dev\\n[env:evil]"'),
                                    "'platformio.board'", "letters, digits"),
    "comment into platformio.ini": ("esp32dev", ('platform = "espressif32"', 'platform = "espressif32 ; x"'),
                                    "'platformio.platform'", "a PlatformIO value"),
    "section into platformio.ini": ("esp32dev", ('platform = "espressif32"', 'platform = "[espressif32]"'),
                                    "'platformio.platform'", "a PlatformIO value"),
    "newline into a comment": ("esp32dev", ('chip = "ESP32"', 'chip = "ESP32\\n[env:evil]"'), "'chip'", "one line"),
    "make variable": ("qemu-riscv32", ('"-O2"', '"$(shell touch pwned)"'), "'toolchain.cflags'", "one word"),
    "path out of firmware/": ("qemu-riscv32", ('linker_script = "qemu_virt.ld"', 'linker_script = "../x.ld"'),
                              "'toolchain.linker_script'", "no '/'"),
    "NUL in a command": ("qemu-riscv32", ('command = ["qemu-system-riscv32"', 'command = ["qemu\\u0000"'),
                         "'emulator.command'", "without control characters"),
}


@pytest.mark.unit
@pytest.mark.parametrize("case", sorted(HOSTILE_PROFILE_VALUES))
def test_a_hostile_profile_value_is_bad_input_naming_key_value_and_what_is_accepted(case):
    """Zero, negative, absurd or NaN numbers (a zero clock divided by zero, a negative one gave a
    negative latency reported as met), and strings that would inject into platformio.ini, the
    Makefile or a command line, are refused when the profile is read."""
    from tinydeploy.core.boards import parse_board
    from tinydeploy.core.errors import BadInput
    base, change, key, accepted = HOSTILE_PROFILE_VALUES[case]
    with pytest.raises(BadInput) as refused:
        parse_board(_profile(base, "hostile", change), "hostile.toml")
    message = str(refused.value)
    assert "hostile.toml" in message and key in message and accepted in message


@pytest.mark.unit
@given(value=st.floats(allow_nan=True, allow_infinity=True, width=64))
@example(value=0.0)
@example(value=1e6)
@example(value=-0.0)
def test_any_cycle_count_is_accepted_exactly_when_it_is_a_physical_one(value):
    """Property: a cycle count is read iff it is finite and in 0..1e6, and a profile that is read
    never estimates a negative or NaN latency."""
    import math

    from tinydeploy.core.boards import parse_board
    from tinydeploy.core.errors import BadInput
    text = _profile("esp32dev", "prop", ("FULLY_CONNECTED = 12.74", f"FULLY_CONNECTED = {value!r}"))
    physical = math.isfinite(value) and 0 <= value <= 1e6
    try:
        board = parse_board(text, "prop.toml")
    except BadInput as exc:
        assert not physical and "'latency.cycles_per_mac.esp-nn.FULLY_CONNECTED'" in str(exc)
        return
    assert physical
    estimate = board.estimate_us("FULLY_CONNECTED", 1000)
    assert math.isfinite(estimate) and estimate >= 0


@pytest.mark.unit
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12))
@example(text="espressif32\n[env:evil]")
@example(text="x ; y")
@example(text="${sysenv.HOME}")
@example(text="https://github.com/platformio/platform-espressif32.git#v6.5.0")
def test_a_platformio_value_either_is_refused_or_stays_one_value_of_one_section(text):
    """Property: whatever string a profile gives as its PlatformIO platform, either it is refused
    naming 'platformio.platform', or the platformio.ini written from it has one section whose
    platform is that string, read back as PlatformIO reads it (';' and '#' comments, ${} variables)."""
    import configparser

    from tinydeploy.core.boards import parse_board
    from tinydeploy.core.errors import BadInput
    from tinydeploy.codegen.templating import environment
    toml_text = json.dumps(text, ensure_ascii=False)  # a TOML basic string, but for DEL (which TOML refuses)
    try:
        board = parse_board(_profile("esp32dev", "prop", ('platform = "espressif32"', f"platform = {toml_text}")),
                            "prop.toml")
    except BadInput as exc:
        assert "'platformio.platform'" in str(exc) or "invalid TOML" in str(exc)
        return
    ini = environment().get_template("common/platformio.ini.j2").render(
        banner="b", board=board, framework="espidf", f_cpu="240000000L", baud=115200, upload_speed=921600,
        env_name=board.name, extra=[])
    parser = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    parser.read_string(ini)
    assert parser.sections() == ["env:prop"] and parser["env:prop"]["platform"] == text


def test_a_project_finds_its_user_profile_from_another_folder(tmp_path, monkeypatch, capsys, int8_cnn, rv32_tools):
    """The profile a project was rendered with is recorded by its absolute path: `build` run from
    another folder finds it (it said "unknown board" when --boards-dir was relative)."""
    here = tmp_path / "here"
    (here / "mine").mkdir(parents=True)
    (here / "mine" / "my-qemu.toml").write_text(_profile("qemu-riscv32", "my-qemu"), encoding="utf-8")
    monkeypatch.chdir(here)
    assert main(["render", str(int8_cnn), "--board", "my-qemu", "--boards-dir", "mine", "--out", "project"]) == 0
    recorded = json.loads((here / "project" / "tinydeploy.json").read_text())
    assert recorded["board_profile"] == str(here / "mine" / "my-qemu.toml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["build", str(here / "project"), "--json"]) == 0, capsys.readouterr().err
    assert (here / "project" / "build" / "firmware.elf").is_file()


def test_a_projects_vanished_profile_is_named(tmp_path, monkeypatch, capsys, int8_cnn):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "lab.toml").write_text(_profile("esp32dev", "lab"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["render", str(int8_cnn), "--board", "lab", "--boards-dir", "mine", "--out", "p"]) == 0
    (tmp_path / "mine" / "lab.toml").unlink()
    capsys.readouterr()
    assert main(["build", "p"]) == 2
    err = capsys.readouterr().err
    assert "board 'lab'" in err and str(tmp_path / "mine" / "lab.toml") in err and "--boards-dir" in err


def test_bench_profile_estimates_layers_with_the_boards_dir_profiles(tmp_path, capsys, int8_cnn):
    """bench --profile reads --boards-dir: each layer gets the user profile's estimate (none before)."""
    from tinydeploy.device.virtual_device import VirtualDevice
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "virtual.toml").write_text(_profile("esp32dev", "virtual"), encoding="utf-8")  # the stand-in's name
    with VirtualDevice(int8_cnn) as device:
        port = device.open_pty()
        for folder, extra in (("without", []), ("with", ["--boards-dir", str(boards)])):
            argv = ["bench", "--port", port, "--expect-model", str(int8_cnn), "--runs", "1", "--warmup", "0",
                    "--profile", "--out", str(tmp_path / folder), "--json", *extra]
            assert main(argv) == 0
            layers = json.loads(capsys.readouterr().out)["profile"]["layers"]
            assert all(("estimate_us" in layer) == (folder == "with") for layer in layers)
    assert main(["bench", "--port", "socket://127.0.0.1:9", "--profile", "--boards-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "x")]) == 2


# -- issue 29, device truth: a device that disagrees with the host fails bench and verify ------------
@pytest.fixture
def disagreeing_host(monkeypatch):
    """The host reference answers class 0 for the first sample only: the device then disagrees there."""
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.core.names import TFLM
    engine = ENGINES[TFLM]
    real = engine.reference

    def reference(model, inputs):
        outputs = np.array(real(model, inputs))
        outputs[0] = -128
        outputs[0, (int(np.argmax(outputs[0])) + 1) % outputs.shape[1]] = 127
        return outputs
    monkeypatch.setattr(engine, "reference", reference)


def test_bench_validate_fails_when_the_device_disagrees_on_any_sample(tmp_path, capsys, int8_cnn, disagreeing_host):
    """bench --validate exits 1 when one sample in ten disagrees (it exited 0 at 93% agreement),
    keeping the results; --min-agreement 0.9 accepts it; verify's JUnit fails the agreement case."""
    from tinydeploy.device.virtual_device import VirtualDevice
    with VirtualDevice(int8_cnn) as device:
        port = device.open_pty()
        common = ["bench", "--port", port, "--expect-model", str(int8_cnn), "--runs", "1", "--warmup", "0",
                  "--validate", "10", "--data", "digits", "--json"]
        assert main([*common, "--out", str(tmp_path / "strict")]) == 1
        document = json.loads(capsys.readouterr().out)
        assert "agreed with the host reference" in document["error"] and "--min-agreement" in document["error"]
        saved = json.loads((tmp_path / "strict" / "results.json").read_text())
        assert saved["validation"]["top1_agreement"] == 0.9 and saved["complete"] is True
        assert main([*common, "--out", str(tmp_path / "lowered"), "--min-agreement", "0.9"]) == 0
        capsys.readouterr()
    junit = tmp_path / "junit.xml"
    lenient = ["--max-latency-ms", "1000", "--max-arena-kb", "1000"]  # host latency, not the board's
    assert main(["verify", str(tmp_path / "strict"), *lenient, "--junit", str(junit)]) == 1
    assert '<testcase classname="tinydeploy.device.verify" name="agreement"><failure' in junit.read_text()
    assert main(["verify", str(tmp_path / "strict"), *lenient, "--min-agreement", "0.9", "--junit", str(junit)]) == 0
    assert 'failures="0"' in junit.read_text()


# -- issue 29, class 3: one failed search candidate is that trial's failure -------------------------
def test_a_search_candidate_that_fails_is_its_trials_failure_and_the_search_goes_on(tmp_path, capsys, monkeypatch):
    """The post-training evaluation of the first candidate raises: that trial is failed and
    recorded with why, the next trial trains, the summary lists it, and no traceback is printed
    (Optuna's own log only with --debug). The study is a real SQLite storage."""
    import optuna

    from tinydeploy.runtime import evaluate as evaluate_module
    real = evaluate_module.evaluate
    calls = []

    def evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the converter produced a model TFLM cannot evaluate")
        return real(*args, **kwargs)
    monkeypatch.setattr(evaluate_module, "evaluate", evaluate)
    argv = ["search", "--data", "digits", "--image-size", "8", "--trials", "2", "--budget", "fast",
            "--max-latency-ms", "1000", "--max-arena-kb", "256", "--max-model-kb", "512", "--out", str(tmp_path / "s"),
            "--json"]
    code = main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    summary = json.loads(captured.out)
    assert code == 0 and summary["trials"] == 2 and summary["failed"] == 1 and summary["complete"] == 1
    assert summary["failed_trials"] == [{"trial": 0, "why": "RuntimeError: the converter produced a model TFLM "
                                                            "cannot evaluate"}]
    study = optuna.load_study(study_name="tinydeploy", storage=f"sqlite:///{tmp_path / 's' / 'search.db'}")
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]


@pytest.mark.parametrize("failure", ["bad input", "step failed"])
def test_every_failing_trial_ends_the_search_with_exit_1_naming_the_first(tmp_path, capsys, monkeypatch, failure):
    from tinydeploy.core.errors import BadInput
    from tinydeploy.optimize import search as search_module
    real, calls = search_module.cost, []

    def cost(arch, *args, **kwargs):
        calls.append(arch.name)
        if arch.name == "smallest":  # the feasibility check before any trial
            return real(arch, *args, **kwargs)
        raise (BadInput if failure == "bad input" else ValueError)("TFLM refused a tensor of this candidate")
    monkeypatch.setattr(search_module, "cost", cost)
    code = main(["search", "--data", "digits", "--image-size", "8", "--trials", "2", "--out", str(tmp_path / "s"),
                 "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "Traceback" not in captured.err
    assert "every trial of this run failed (2)" in json.loads(captured.out)["error"]
    assert "TFLM refused a tensor" in captured.err


# -- issue 29, usage conflicts still write the JUnit file asked for ----------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("argv", [["verify", "--farm", "{farm}", "--port", "socket://127.0.0.1:9"],
                                  ["verify", "{results}", "--farm", "{farm}"],
                                  ["verify", "{results}", "--min-agreement", "2"],
                                  ["verify", "{results}", "--no-such-option"]])
def test_a_usage_conflict_still_writes_the_junit_file(tmp_path, capsys, argv):
    farm, results = tmp_path / "farm.toml", tmp_path / "results.json"
    farm.write_text('[[board]]\nname = "a"\nport = "socket://127.0.0.1:9"\n')
    results.write_text("{}")
    junit = tmp_path / "junit.xml"
    argv = [a.format(farm=farm, results=results) for a in argv]
    assert main([*argv, "--junit", str(junit)]) == 2
    xml = junit.read_text()
    assert 'failures="1"' in xml and 'name="usage"' in xml
    first_words = capsys.readouterr().err.split("error: ", 1)[1][:30]
    assert first_words in xml


# -- issue 29, class 11: the Arduino library's FULLY_CONNECTED has one multiplier per layer ----------
def test_arduino_refuses_per_channel_dense_layers_naming_why_and_the_fix(tmp_path, capsys, int8_cnn,
                                                                        int8_cnn_per_tensor_dense):
    assert main(["render", str(int8_cnn), "--board", "esp32dev", "--framework", "arduino", "--out",
                 str(tmp_path / "a"), "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    for words in ("FULLY_CONNECTED operator 5", "per output channel", "one multiplier", "--framework espidf",
                  "per_tensor_dense=True"):
        assert words in error
    assert not (tmp_path / "a" / "platformio.ini").exists()
    assert main(["render", str(int8_cnn), "--board", "esp32dev", "--framework", "espidf", "--out",
                 str(tmp_path / "e")]) == 0
    assert main(["render", str(int8_cnn_per_tensor_dense), "--board", "esp32dev", "--framework", "arduino", "--out",
                 str(tmp_path / "p")]) == 0
