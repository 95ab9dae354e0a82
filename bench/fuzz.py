"""Long randomized fuzzing of every command that reads a model: damaged .tflite files must end
as a clean exit (0, 1 or 2), never as an internal error.

It builds a small int8 model (a CNN calibrated on the built-in digits, with the ops the C
engine lowers), damages it again and again (byte flips, truncation, extension, and mutations
of the flatbuffer's fields: tensor shapes and types, buffer indices and data, operator inputs,
outputs and opcode indices, quantization arrays, options), and runs each damaged model
through the CLI in this process:

  inspect, render --engine tflm (esp32dev), render --engine c (qemu-riscv32, whose only
  engine is C), evaluate (digits), virtual-device (TCP, stopped once it serves), and
  bench --expect-model against a virtual device serving the damaged model (or the good one
  when the damaged model cannot be served), with --validate and --profile.

Each run is classified as exit 0/1/2 or an internal error (an exception other than
tinydeploy's own errors, an exception in a background thread, or a run past --timeout).
At the end it prints a table per command and, for each distinct internal error (its type and
the innermost tinydeploy frame), the first reproducer, saved under --keep.

Usage:
    python bench/fuzz.py --minutes 10 [--seed S] [--keep DIR] [--commands inspect,render-c]

The property tests in tests/test_bad_input.py run the same kinds of damage with a fixed seed
and a small budget; this script is the long, randomized search, run on demand.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tinydeploy.cli import main  # noqa: E402
from tinydeploy.core.errors import TinyDeployError  # noqa: E402

IMAGE_SIZE = 16
COMMANDS = ("inspect", "render-tflm", "render-c", "evaluate", "virtual-device", "bench")


# -- the model ---------------------------------------------------------------------------------
def build_model(seed: int = 0) -> bytes:
    """A small int8 CNN on 16x16 digits, with conv, depthwise, pooling, pad, add, mean, dense,
    reshape and softmax (every kernel family the C engine lowers); calibrated, not trained."""
    from tinydeploy.core import data
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.runtime import _tf

    keras = _tf.keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    inputs = layers.Input((IMAGE_SIZE, IMAGE_SIZE, 1))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    y = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = layers.Add()([x, y])
    x = layers.ZeroPadding2D(1)(x)
    x = layers.Conv2D(12, 3, strides=2, activation="relu")(x)
    x = layers.AveragePooling2D()(x)
    x = layers.Reshape((2, 2, 12))(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    digits = data.load("digits", image_size=IMAGE_SIZE, seed=seed)
    return to_int8_tflite(model, digits.x_train[:64])


# -- damage ------------------------------------------------------------------------------------
def _odd_int(rng: random.Random, size: int = 16) -> int:
    """An index or a dimension that is often just wrong: negative, zero, one past the end, huge."""
    return rng.choice([-1, -2, 0, 1, size - 1, size, size + 1, rng.randrange(-5, size + 5), 255, 1 << 16,
                       (1 << 31) - 1, -(1 << 31)])


def _odd_float(rng: random.Random) -> float:
    return rng.choice([0.0, -0.0, -1.0, 1e-30, 1e30, float("nan"), float("inf"), -float("inf"), 3.4e38,
                       rng.uniform(-2, 2)])


def _mutate_list(rng: random.Random, values, size: int, odd=_odd_int) -> list:
    values = list(values if values is not None else [])
    action = rng.choice(["set", "drop", "add", "empty", "none"] if values else ["add", "none"])
    if action == "set":
        values[rng.randrange(len(values))] = odd(rng, size) if odd is _odd_int else odd(rng)
    elif action == "drop":
        del values[rng.randrange(len(values))]
    elif action == "add":
        values.insert(rng.randrange(len(values) + 1), odd(rng, size) if odd is _odd_int else odd(rng))
    elif action == "empty":
        values = []
    else:
        return None
    return values


def _short(values) -> str:
    if values is None:
        return "none"
    values = [v for v in values]
    return str(values[:6])[:-1] + (", ...]" if len(values) > 6 else "]")


def _field_mutation(rng: random.Random, original: bytes) -> tuple[bytes, str]:
    """Change one field of the flatbuffer through TFLite's schema and pack it again."""
    from flatbuffers import Builder
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

    model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(original), 0)
    graph = model_t.subgraphs[0]
    tensors, operators, buffers = graph.tensors, graph.operators, model_t.buffers
    n_t, n_ops, n_buf, n_codes = len(tensors), len(operators), len(buffers), len(model_t.operatorCodes)
    kind = rng.choice(["shape", "shape", "type", "buffer", "buffer-data", "buffer-offset", "op-input",
                       "op-input", "op-output", "opcode-index", "opcode", "scale", "zero-point", "quant-axis",
                       "graph-io", "options", "variable", "drop-op", "swap-tensors"])
    t = rng.randrange(n_t)
    o = rng.randrange(n_ops)
    tensor, op = tensors[t], operators[o]
    if kind == "shape":
        tensor.shape = _mutate_list(rng, tensor.shape, 64)
        what = f"tensor {t} shape -> {_short(tensor.shape)}"
    elif kind == "type":
        tensor.type = rng.choice([0, 1, 2, 3, 4, 6, 7, 9, 10, 16, 17, 18, 255, rng.randrange(0, 30)])
        what = f"tensor {t} type -> {tensor.type}"
    elif kind == "buffer":
        tensor.buffer = rng.choice([_odd_int(rng, n_buf), rng.randrange(n_buf)]) % (1 << 32)
        what = f"tensor {t} buffer -> {tensor.buffer}"
    elif kind == "buffer-data":
        b = rng.randrange(n_buf)
        data = bytes(buffers[b].data) if buffers[b].data is not None else b""
        cut = rng.choice([0, 1, len(data) // 2, max(len(data) - 1, 0), len(data) + rng.randrange(1, 64)])
        buffers[b].data = list(data[:cut] + bytes(rng.randrange(256) for _ in range(max(0, cut - len(data)))))
        what = f"buffer {b} data {len(data)} -> {cut} bytes"
    elif kind == "buffer-offset":
        b = rng.randrange(n_buf)
        buffers[b].offset, buffers[b].size = rng.choice([1, 8, len(original), 1 << 40]), rng.choice([1, 64, 1 << 20])
        what = f"buffer {b} offset/size -> {buffers[b].offset}/{buffers[b].size}"
    elif kind in ("op-input", "op-output"):
        attr = "inputs" if kind == "op-input" else "outputs"
        setattr(op, attr, _mutate_list(rng, getattr(op, attr), n_t))
        what = f"operator {o} {attr} -> {_short(getattr(op, attr))}"
    elif kind == "opcode-index":
        op.opcodeIndex = _odd_int(rng, n_codes) % (1 << 32)
        what = f"operator {o} opcode index -> {op.opcodeIndex}"
    elif kind == "opcode":
        code = model_t.operatorCodes[rng.randrange(n_codes)]
        code.builtinCode = rng.choice([0, 1, 3, 4, 9, 17, 22, 25, 32, 40, 114, 200, rng.randrange(0, 210)])
        code.deprecatedBuiltinCode = min(code.builtinCode, 127)
        what = f"an opcode -> builtin {code.builtinCode}"
    elif kind in ("scale", "zero-point", "quant-axis"):
        q = tensor.quantization or schema_fb.QuantizationParametersT()
        tensor.quantization = q
        if kind == "scale":
            q.scale = _mutate_list(rng, q.scale, 0, odd=_odd_float)
            what = f"tensor {t} scales -> {_short(q.scale)}"
        elif kind == "zero-point":
            q.zeroPoint = _mutate_list(rng, [int(z) for z in q.zeroPoint] if q.zeroPoint is not None else None, 300)
            what = f"tensor {t} zero points -> {_short(q.zeroPoint)}"
        else:
            q.quantizedDimension = _odd_int(rng, 4)
            what = f"tensor {t} quantized dimension -> {q.quantizedDimension}"
    elif kind == "graph-io":
        attr = rng.choice(["inputs", "outputs"])
        setattr(graph, attr, _mutate_list(rng, getattr(graph, attr), n_t))
        what = f"graph {attr} -> {_short(getattr(graph, attr))}"
    elif kind == "options":
        opts = op.builtinOptions
        names = [n for n in vars(opts)] if opts is not None else []
        if not names:
            return _field_mutation(rng, original)
        name = rng.choice(names)
        value = getattr(opts, name)
        setattr(opts, name, _odd_float(rng) if isinstance(value, float) else _odd_int(rng, 8) % 256
                if isinstance(value, bool) or name in ("padding", "fusedActivationFunction") else _odd_int(rng, 8))
        what = f"operator {o} option {name} -> {getattr(opts, name)}"
    elif kind == "variable":
        tensor.isVariable = not tensor.isVariable
        what = f"tensor {t} variable -> {tensor.isVariable}"
    elif kind == "drop-op":
        del operators[o]
        what = f"operator {o} removed"
    else:
        u = rng.randrange(n_t)
        tensors[t], tensors[u] = tensors[u], tensors[t]
        what = f"tensors {t} and {u} swapped"
    builder = Builder(len(original) + 4096)
    try:
        builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    except Exception:  # noqa: BLE001 - a value the schema can't hold: try another mutation
        return _field_mutation(rng, original)
    return bytes(builder.Output()), what


def damage(rng: random.Random, original: bytes) -> tuple[bytes, str]:
    """One damaged copy of the model, and what was done to it."""
    kind = rng.choice(["flip", "flip", "bits", "truncate", "extend", "field", "field", "field", "field"])
    data = bytearray(original)
    if kind == "flip":
        count = rng.choice([1, 1, 2, 4, 16])
        places = [rng.randrange(len(data)) for _ in range(count)]
        for at in places:
            data[at] = rng.randrange(256)
        return bytes(data), f"{count} byte(s) set at {places[:4]}"
    if kind == "bits":
        at = rng.randrange(len(data))
        data[at] ^= 1 << rng.randrange(8)
        return bytes(data), f"a bit flipped at {at}"
    if kind == "truncate":
        cut = rng.randrange(len(data))
        return bytes(data[:cut]), f"truncated to {cut} bytes"
    if kind == "extend":
        extra = bytes(rng.randrange(256) for _ in range(rng.choice([1, 7, 64, 4096])))
        return bytes(data) + extra, f"{len(extra)} bytes appended"
    return _field_mutation(rng, original)


# -- running one command -----------------------------------------------------------------------
@dataclass
class Outcome:
    code: int | None  # 0, 1 or 2; None for an internal error
    signature: str = ""  # for an internal error: its type and the innermost tinydeploy frame
    message: str = ""


def _signature(exc: BaseException) -> str:
    """The exception's type and the innermost tinydeploy frame: what makes two crashes one."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "tinydeploy" in f.filename]
    if not frames:
        return type(exc).__name__
    f = frames[-1]
    path = Path(f.filename)
    shown = path.relative_to(HERE.parent) if HERE.parent in path.parents else path
    return f"{type(exc).__name__} at {shown}:{f.lineno} ({f.name})"


class _Expired(BaseException):
    """The run took longer than --timeout (a BaseException, so no handler inside swallows it)."""


class Runner:
    """Runs CLI commands in this process, in a scratch folder, with a time limit, and records
    exceptions raised in background threads (the virtual device's sessions)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.thread_errors: list[BaseException] = []
        threading.excepthook = lambda hook: self.thread_errors.append(hook.exc_value)

    def cli(self, argv: list[str], work: Path, during=None) -> Outcome:
        """main(argv) with --debug, so a bug raises with its traceback; `during(done)`, when given,
        runs in a thread alongside until the command returns (done is set then): it stops a
        command that serves until stopped."""
        self.thread_errors.clear()
        sink = io.StringIO()

        def expired(*_):
            raise _Expired()

        previous_alarm = signal.signal(signal.SIGALRM, expired)
        previous_term = signal.signal(signal.SIGTERM, lambda *_: None)  # until the command sets its own
        done = threading.Event()
        helper = None
        if during is not None:
            helper = threading.Thread(target=during, args=(done,), daemon=True)
            helper.start()
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        old = os.getcwd()
        os.chdir(work)
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                code = main([*argv, "--debug"])
            outcome = Outcome(code)
        except TinyDeployError as exc:
            outcome = Outcome(exc.exit_code, message=str(exc))
        except _Expired:
            outcome = Outcome(None, f"hang (over {self.timeout:g} s)", " ".join(argv[:1]))
        except Exception as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            outcome = Outcome(None, _signature(exc), f"{type(exc).__name__}: {exc}"[:300])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            os.chdir(old)
            done.set()
            if helper is not None:
                helper.join(timeout=10)
            signal.signal(signal.SIGALRM, previous_alarm)
            signal.signal(signal.SIGTERM, previous_term)
        if outcome.code is not None and self.thread_errors:
            exc = self.thread_errors[0]
            outcome = Outcome(None, "in a thread: " + _signature(exc), f"{type(exc).__name__}: {exc}"[:300])
        return outcome


def _stop_when_serving(port_file: Path):
    """For virtual-device: once it has written its port file, connect, ask for its info, and
    stop it with SIGTERM, as Ctrl-C or a service manager would."""
    def watch(done: threading.Event) -> None:
        while not done.is_set():
            if port_file.exists() and port_file.read_text().strip():
                _ask_info(port_file.read_text().strip())
                # Again until the command returns: its handler is set just after it writes the file
                while not done.is_set():
                    os.kill(os.getpid(), signal.SIGTERM)
                    done.wait(0.2)
                return
            time.sleep(0.02)
    return watch


def _ask_info(url: str) -> None:
    import socket
    host, port = url.removeprefix("socket://").rsplit(":", 1)
    with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=2) as conn:
        conn.sendall(b"info%")
        with contextlib.suppress(OSError):
            conn.recv(4096)


class Commands:
    """Each fuzzed command: argv for a damaged model, run in a scratch folder."""

    def __init__(self, runner: Runner, good_model: Path):
        self.runner = runner
        self.good_model = good_model
        self._good_device = None

    def run(self, command: str, model: Path, work: Path) -> Outcome:
        out = str(work / "out")
        if command == "inspect":
            return self.runner.cli(["inspect", str(model)], work)
        if command == "render-tflm":
            return self.runner.cli(["render", str(model), "--board", "esp32dev", "--engine", "tflm", "--out", out],
                                   work)
        if command == "render-c":
            return self.runner.cli(["render", str(model), "--board", "qemu-riscv32", "--engine", "c", "--out", out],
                                   work)
        if command == "evaluate":
            return self.runner.cli(["evaluate", str(model), "--data", "digits", "--image-size", str(IMAGE_SIZE)],
                                   work)
        if command == "virtual-device":
            port_file = work / "port"
            return self.runner.cli(["virtual-device", str(model), "--tcp", "0", "--port-file", str(port_file),
                                    "--json"], work, during=_stop_when_serving(port_file))
        if command == "bench":
            return self._bench(model, work, out)
        raise ValueError(command)

    def _device_for(self, model: Path):
        """A virtual device serving the damaged model, or the good model's when it can't be served."""
        from tinydeploy import api
        try:
            return api.virtual_device(model), True
        except Exception:  # noqa: BLE001 - the virtual-device command's own runs judge this
            if self._good_device is None:
                self._good_device = api.virtual_device(self.good_model)
                self._good_device.open_tcp(0)
            return self._good_device, False

    def _bench(self, model: Path, work: Path, out: str) -> Outcome:
        device, own = self._device_for(model)
        try:
            url = device.open_tcp(0) if own else device.address
            return self.runner.cli(["bench", "--port", url, "--expect-model", str(model), "--runs", "2",
                                    "--warmup", "0", "--validate", "3", "--data", "digits", "--image-size",
                                    str(IMAGE_SIZE), "--profile", "--timeout", "5", "--out", out], work)
        finally:
            if own:
                device.close()

    def close(self) -> None:
        if self._good_device is not None:
            self._good_device.close()


# -- the run -----------------------------------------------------------------------------------
@dataclass
class Tally:
    tries: int = 0
    exits: Counter = field(default_factory=Counter)
    internal: int = 0


def _table(tallies: dict[str, Tally], found: dict[tuple[str, str], tuple[Outcome, Path | None, str]]) -> str:
    lines = [f"{'command':<16}{'tries':>7}{'exit 0':>8}{'exit 1':>8}{'exit 2':>8}{'internal':>10}"]
    for command, t in tallies.items():
        lines.append(f"{command:<16}{t.tries:>7}{t.exits[0]:>8}{t.exits[1]:>8}{t.exits[2]:>8}{t.internal:>10}")
    total = sum(t.internal for t in tallies.values())
    lines.append(f"internal errors: {total} ({len(found)} distinct)")
    for (command, signature), (outcome, path, what) in found.items():
        lines.append(f"- {command}: {signature}\n    {outcome.message}\n    damage: {what}"
                     + (f"\n    reproducer: {path}" if path else ""))
    return "\n".join(lines)


def main_fuzz(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to fuzz (default %(default)g)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a random one, printed)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="save the first damaged model of each distinct internal error here")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help=f"comma-separated subset of {', '.join(COMMANDS)}")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds one command may take before it counts as a hang (default %(default)g; "
                             "the TFLM child's own limit is 120 s a request)")
    args = parser.parse_args(argv)
    commands = [c for c in args.commands.split(",") if c]
    unknown = sorted(set(commands) - set(COMMANDS))
    if unknown:
        parser.error(f"unknown commands: {', '.join(unknown)}. Known: {', '.join(COMMANDS)}")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed {seed} (rerun with --seed {seed})", flush=True)
    rng = random.Random(seed)
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)

    import logging
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    scratch = Path(tempfile.mkdtemp(prefix="tinydeploy-fuzz-"))
    print("building the model ...", file=sys.stderr, flush=True)
    with contextlib.redirect_stdout(io.StringIO()):
        original = build_model(0)
    good = scratch / "good.tflite"
    good.write_bytes(original)
    runner = Runner(args.timeout)
    runs = Commands(runner, good)
    tallies = {c: Tally() for c in commands}
    found: dict[tuple[str, str], tuple[Outcome, Path | None, str]] = {}
    start = time.monotonic()
    deadline = start + args.minutes * 60
    tries = 0
    try:
        while time.monotonic() < deadline:
            command = commands[tries % len(commands)]
            damaged, what = damage(rng, original)
            work = Path(tempfile.mkdtemp(dir=scratch))
            model = work / "m.tflite"
            model.write_bytes(damaged)
            outcome = runs.run(command, model, work)
            tries += 1
            tally = tallies[command]
            tally.tries += 1
            if outcome.code is None:
                tally.internal += 1
                key = (command, outcome.signature)
                if key not in found:
                    path = None
                    if keep:
                        path = keep / f"{command}-{len(found) + 1}.tflite"
                        path.write_bytes(damaged)
                    found[key] = (outcome, path, what)
                    print(f"\nnew internal error in {command}: {outcome.signature}: {outcome.message}"
                          + (f" ({path})" if path else ""), file=sys.stderr)
            else:
                tally.exits[outcome.code] += 1
            elapsed = time.monotonic() - start
            print(f"\r{elapsed / 60:5.1f}/{args.minutes:g} min  {tries} tries  "
                  f"{sum(t.internal for t in tallies.values())} internal errors ({len(found)} distinct)",
                  end="", file=sys.stderr, flush=True)
            shutil.rmtree(work, ignore_errors=True)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        runs.close()
    print(file=sys.stderr)
    print(f"seed {seed}, {args.minutes:g} min, {tries} tries, model {len(original)} bytes")
    print(_table(tallies, found))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main_fuzz())
