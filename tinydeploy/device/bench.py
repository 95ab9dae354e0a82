"""`tinydeploy bench`: read the truth back from a board over serial.

The host side of docs/protocol.md. Everything received is logged to
OUT/serial.log as it arrives, and OUT/results.json is written even when a run
fails half-way, so nothing measured is lost.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.names import TFLM
from tinydeploy.core.protocol import VIRTUAL_LAYER_BASIS, Line, parse_line

CHUNK = 31  # bytes per `db` command, as the MLPerf Tiny runner sends them
SERIAL_HINT = "likely cabling, drivers or a port in use by another program (a serial monitor?)"


def shown(text: str, limit: int = 200) -> str:
    """Device text made safe to print: control characters (terminal escapes, BEL, NUL) become
    visible escapes, and long text is cut, saying so."""
    safe = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)
    return safe if len(safe) <= limit else safe[:limit] + f"... ({len(safe) - limit} more characters)"


class DeviceTimeout(StepFailed):
    """The device stopped answering."""


class DeviceError(StepFailed):
    """The device answered a command with e-[...]."""


class Connection:
    """A serial connection speaking the protocol, logging every line to a file.

    Args:
        port: a device path or any pyserial URL (socket://, rfc2217://).
        baud: the line rate.
        log_path: where the transcript goes.
        timeout: seconds to wait for a reply line.
    """

    def __init__(self, port: str, baud: int, log_path: Path, timeout: float = 10.0):
        import serial
        self.port, self.timeout, self.log_path = port, timeout, Path(log_path)
        self.recent: deque[str] = deque(maxlen=12)
        self.boot: list[Line] = []  # what the device printed before answering name% (sync)
        self._buffer = b""
        self.log = open(self.log_path, "a", encoding="utf-8", errors="replace")
        try:
            self.serial = serial.serial_for_url(port, baudrate=baud, timeout=0.05, exclusive=True)
        except serial.SerialException as exc:
            self.log.close()
            text = str(exc)
            if "lock" in text.lower() or "busy" in text.lower():
                raise StepFailed(f"port {port} is busy: another program (or another bench) is using it") from exc
            raise StepFailed(f"cannot open {port}: {text} ({SERIAL_HINT})") from exc

    def close(self) -> None:
        try:
            self.serial.close()
        finally:
            self.log.close()

    def _record(self, direction: str, text: str) -> None:
        self.log.write(f"{direction} {text}\n")
        self.log.flush()

    def reset(self) -> bool:
        """Pulse EN through RTS (IO0 high through DTR), as ESP32 auto-reset circuits wire them.
        Returns False where the port has no modem lines (a socket, a pty)."""
        try:
            self.serial.dtr = False
            self.serial.rts = True
            time.sleep(0.1)
            self.serial.rts = False
            return True
        except Exception:  # noqa: BLE001 - ports without modem control raise various errors
            return False

    def read_line(self, deadline: float) -> Line | None:
        """The next received line, parsed; None at the deadline."""
        import serial
        while b"\n" not in self._buffer:
            if time.monotonic() > deadline:
                return None
            try:
                chunk = self.serial.read(max(1, self.serial.in_waiting))
            except (serial.SerialException, OSError) as exc:
                if self._buffer:  # the last words before the link went away still count
                    self._buffer += b"\n"
                    break
                raise StepFailed(f"lost {self.port}: {exc} ({SERIAL_HINT}); log: {self.log_path}") from exc
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\n", 1)
        text = raw.decode("latin-1").rstrip("\r")
        self._record("<<", text)
        self.recent.append(text)
        return parse_line(text)

    def timeout_error(self, waiting_for: str) -> DeviceTimeout:
        last = " | ".join(shown(line) for line in self.recent) or "(no complete line)"
        if self._buffer:
            last += f"; then, without a line end: {shown(self._buffer.decode('latin-1'))}"
        return DeviceTimeout(f"no {waiting_for} from {self.port} within {self.timeout:g} s. Last lines: {last}. "
                             f"Full log: {self.log_path}")

    def command(self, command: str) -> list[Line]:
        """Send a command and collect its reply up to m-ready.

        Raises:
            DeviceError: the device answered e-[...].
            DeviceTimeout: no m-ready in time.
        """
        return self.pipeline([command])[0]

    def pipeline(self, commands: list[str]) -> list[list[Line]]:
        """Send several commands back to back, then collect each one's reply in order.

        The device handles bytes as they arrive, so the host need not wait a
        round trip per command; this keeps --validate near the line rate.
        """
        self.send_all(commands)
        return self.replies(commands)

    def send_all(self, commands: list[str]) -> None:
        import serial
        for c in commands:
            self._record(">>", c + "%")
        try:
            self.serial.write("".join(c + "%" for c in commands).encode())
            self.serial.flush()
        except (serial.SerialException, OSError) as exc:
            raise StepFailed(f"lost {self.port} while sending: {exc} ({SERIAL_HINT}); log: {self.log_path}") from exc

    def replies(self, commands: list[str]) -> list[list[Line]]:
        """The replies to commands already sent, in order."""
        return [self._reply(command) for command in commands]

    def _reply(self, command: str) -> list[Line]:
        lines: list[Line] = []
        deadline = time.monotonic() + self.timeout
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise self.timeout_error(f"reply to '{command}%'")
            if line.kind == "ready":
                break
            if line.kind != "noise":
                lines.append(line)
        errors = [line.value for line in lines if line.kind == "error"]
        if errors:
            if any("port busy" in e for e in errors):
                raise StepFailed(f"port {self.port} is busy: {shown(errors[0])}")
            raise DeviceError(f"the device answered '{command}%' with an error: {shown(errors[0])}. "
                              f"Log: {self.log_path}")
        return lines

    def sync(self, boot_wait: float = 2.0) -> None:
        """Get in step with the device: after a reset, read its boot lines up to m-ready;
        then send name% and read up to its reply, so that a board that boots late is
        still read as booting. Every line before the name reply is kept in ``boot``."""
        self.boot = []
        deadline = time.monotonic() + boot_wait
        while True:
            line = self.read_line(deadline)
            if line is None or line.kind == "ready":
                break
            self._boot_line(line)
        self.send_all(["name"])
        deadline = time.monotonic() + self.timeout
        named = False
        while True:
            line = self.read_line(deadline)
            if line is None:
                raise self.timeout_error("reply to 'name%'")
            if line.kind == "name":
                named = True
            elif line.kind == "ready" and named:
                return
            elif not named and line.kind != "ready":
                self._boot_line(line)

    def _boot_line(self, line: Line) -> None:
        if line.kind == "error" and "port busy" in str(line.value):
            raise StepFailed(f"port {self.port} is busy: {shown(str(line.value))}")
        self.boot.append(line)

    def setup_failure(self, info: dict) -> str | None:
        """Why the firmware could not set its model up, in its own words, or None.

        The info line says so (setup_error, and no arena_used_bytes); the e-[...] line
        at boot says so too, and the lines the firmware printed just before it (such
        as TFLM's "Failed to resize buffer. Requested: ...") say how."""
        boot_errors = [i for i, line in enumerate(self.boot) if line.kind == "error"]
        error = info.get("setup_error") or (self.boot[boot_errors[0]].value if boot_errors else None)
        if not error:
            return None
        before = self.boot[:boot_errors[0]] if boot_errors else self.boot
        printed = [shown(line.text.strip()) for line in before if line.kind == "noise" and line.text.strip()][-6:]
        said = f" It printed at boot: {' | '.join(printed)}." if printed else ""
        return f"the firmware could not set up the model: {shown(str(error))}.{said} Log: {self.log_path}"


@dataclass
class BenchResult:
    port: str
    info: dict = field(default_factory=dict)
    latency_us: dict | None = None
    latency_instructions: dict | None = None  # emulated boards: instructions retired per inference
    validation: dict | None = None
    profile: dict | None = None  # each layer's time (bench --profile)
    expected_sha256: str | None = None
    complete: bool = False
    error: str | None = None

    @property
    def virtual(self) -> bool:
        return bool(self.info.get("virtual"))

    def to_dict(self) -> dict:
        return {"port": self.port, "virtual": self.virtual, "device": self.info,
                "model_sha256": self.info.get("model_sha256"), "expected_sha256": self.expected_sha256,
                "model_bytes": self.info.get("model_bytes"), "arena_bytes": self.info.get("arena_bytes"),
                "arena_used_bytes": self.info.get("arena_used_bytes"), "latency_us": self.latency_us,
                "latency_instructions": self.latency_instructions,
                "validation": self.validation, "profile": self.profile, "complete": self.complete,
                "error": self.error}


def _latency_stats(samples: list[float], virtual: bool) -> dict:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(np.ceil(0.9 * len(ordered))) - 1)]
    return {"runs": len(samples), "min": min(samples), "median": statistics.median(samples),
            "mean": round(statistics.fmean(samples), 2), "p90": p90, "max": max(samples),
            "basis": ("virtual: host clock running the TFLM interpreter, not board latency" if virtual
                      else "device m-lap-us stamps")}


def _laps(lines: list[Line]) -> list[int]:
    return [line.value for line in lines if line.kind == "lap"]


def _results(lines: list[Line]) -> list[int]:
    found = [line.value for line in lines if line.kind == "results"]
    if not found:
        raise StepFailed("the device's reply has no m-results line")
    return found[-1]


def _load_commands(data: bytes) -> list[str]:
    return [f"db load {len(data)}"] + ["db " + data[i:i + CHUNK].hex() for i in range(0, len(data), CHUNK)]


def load_input(conn: Connection, data: bytes) -> None:
    conn.pipeline(_load_commands(data))


def read_info(conn: Connection) -> dict:
    lines = conn.command("info")
    infos = [line.value for line in lines if line.kind == "info"]
    if not infos:
        raise StepFailed(f"the device did not answer info% (is it tinydeploy firmware?). Log: {conn.log_path}")
    try:
        return json.loads(infos[-1])
    except json.JSONDecodeError as exc:
        raise StepFailed(f"the device's info line is not JSON: {shown(infos[-1], 120)}") from exc


def latency_us(stats: dict, info: dict) -> dict:
    """The device's timings in µs: as measured where its timer counts µs; where it counts
    instructions (an emulated board: info's "timer"), an estimate at its info's cpu_mhz.

    Raises:
        StepFailed: the device counts instructions but reports no clock rate to convert them with.
    """
    if info.get("timer") != "instructions":
        return stats
    mhz = info.get("cpu_mhz")
    if isinstance(mhz, bool) or not isinstance(mhz, (int, float)) or not mhz > 0:
        raise StepFailed(f"the device counts instructions, not µs, but its info gives no clock rate to convert "
                         f"them with (cpu_mhz is {json.dumps(mhz)}); the instruction counts are kept")
    return {**instructions_to_us(stats, float(mhz)), **{k: stats[k] for k in ("partial", "runs_planned") if k in stats}}


def instructions_to_us(stats: dict, cpu_mhz: float) -> dict:
    """An estimate in µs from instruction counts, at one instruction per cycle."""
    scaled = {k: round(stats[k] / cpu_mhz, 3) for k in ("min", "median", "mean", "p90", "max")}
    return {"runs": stats["runs"], **scaled,
            "basis": f"estimate: instructions retired / {cpu_mhz:g} MHz at one instruction per cycle "
                     "(emulated board, not a timing)"}


def measure_latency(conn: Connection, info: dict, runs: int, warmup: int,
                    on_timing: Callable[[dict], None] | None = None) -> dict:
    """Time `runs` single inferences (after `warmup`) from the device's own stamps
    (microseconds, or instructions retired on an emulated board: info's "timer").
    on_timing gets the statistics so far after every timing (marked partial until the last),
    so that a run that stops half-way keeps what it measured."""
    zero = info.get("input", {}).get("zero_point", 0)
    size = int(np.prod(info.get("input", {}).get("shape", [0])))
    load_input(conn, np.full(size, zero, dtype=np.int8).tobytes())
    if warmup:
        conn.command(f"infer 1 {warmup}")
    samples: list[int] = []
    for _ in range(runs):
        laps = _laps(conn.command("infer 1 0"))
        if len(laps) != 2:
            raise StepFailed(f"expected two m-lap-us stamps, got {laps}")
        samples.append(laps[1] - laps[0])
        if on_timing and len(samples) < runs:
            on_timing({**_timer_stats(samples, info), "partial": True, "runs_planned": runs})
    return _timer_stats(samples, info)


def _timer_stats(samples: list[int], info: dict) -> dict:
    stats = _latency_stats(samples, bool(info.get("virtual")))
    if info.get("timer") == "instructions":
        stats["basis"] = "minstret: instructions retired per inference, exact and repeatable under QEMU -icount"
    return stats


def validate_on_device(conn: Connection, model_path: str | Path, x: np.ndarray, y: np.ndarray,
                       progress: Callable[[int, int], None] | None = None, engine: str = TFLM,
                       kernels: str | None = None, on_sample: Callable[[dict], None] | None = None) -> dict:
    """Stream samples to the device and compare its outputs with the host's: the TFLM
    interpreter for TFLM firmware, TFLite's reference kernels for the C engine (which is
    bit-exact with them).

    The result states the device's measured tolerance against that reference: how many
    outputs differ by 0, 1, 2... LSB, and the largest difference. Another kernel library
    (ESP-NN, or an older TFLM in an Arduino library) may round differently; the figure
    says by how much, and nothing is widened to hide it. on_sample gets the figures so far
    after every sample (marked partial until the last)."""
    from tinydeploy.codegen.engines import ENGINES
    from tinydeploy.runtime.evaluate import quantize_input
    from tinydeploy.core.model import load_model
    if engine not in ENGINES:
        raise StepFailed(f"the device runs an engine tinydeploy doesn't know ('{engine}'; engines: "
                         f"{', '.join(ENGINES)}), so there is no host reference to validate it against")
    model = load_model(model_path)
    inputs = quantize_input(model, x)
    host = ENGINES[engine].reference(model, inputs)
    reference = ENGINES[engine].reference_basis
    device: list[list[int]] = []
    started = time.perf_counter()

    def summary() -> dict:
        seconds = time.perf_counter() - started
        done = len(device)
        device_outputs = np.array(device, dtype=np.int32).reshape(done, -1)
        diff = np.abs(device_outputs - host[:done].astype(np.int32))
        levels, level_counts = np.unique(diff, return_counts=True)
        agree = device_outputs.argmax(1) == host[:done].argmax(1)
        return {"kernels": kernels or f"{engine} engine",
                "samples": done, "top1_agreement": round(float(agree.mean()), 5),
                "output_diff_lsb_counts": {str(int(k)): int(n) for k, n in zip(levels, level_counts)},
                "identical_output_values": round(float((diff == 0).mean()), 5),
                "identical_outputs": round(float((diff == 0).all(axis=1).mean()), 5),
                "max_output_diff_lsb": int(diff.max()),
                "device_accuracy": round(float((device_outputs.argmax(1) == y[:done]).mean()), 5),
                "host_accuracy": round(float((host[:done].argmax(1) == y[:done]).mean()), 5),
                "seconds": round(seconds, 3), "samples_per_second": round(done / seconds, 2) if seconds else None,
                "reference": reference}

    batches = [_load_commands(sample.tobytes()) + ["infer 1 0"] for sample in inputs]
    if batches:
        conn.send_all(batches[0])
    for i, batch in enumerate(batches):
        if i + 1 < len(batches):  # one sample in flight ahead, so the line never idles
            conn.send_all(batches[i + 1])
        device.append(_results(conn.replies(batch)[-1]))
        if on_sample and len(device) < len(batches):
            on_sample({**summary(), "partial": True, "samples_planned": len(batches)})
        if progress:
            progress(i + 1, len(inputs))
    return summary()


def profile_layers(conn: Connection, info: dict, model_path: str | Path | None = None) -> dict:
    """Each layer's time on the device (the protocol's layers%: one more inference, timed per
    operator by the firmware's own clock), beside the board profile's estimate for it when the
    host has the model and knows the board.

    Raises:
        DeviceError: the firmware has no per-layer profile, or the run failed.
    """
    lines = [line for line in conn.command("layers") if line.kind == "layer"]
    ticks = [line.value[1] for line in sorted(lines, key=lambda line: line.value[0])]
    timer, total = info.get("timer", "us"), sum(ticks)
    mhz = info.get("cpu_mhz")
    per_us = (1 / mhz) if timer == "instructions" and isinstance(mhz, (int, float)) and mhz > 0 else \
        (1.0 if timer == "us" else None)
    layers = [{"index": i, "ticks": t, "us": round(t * per_us, 3) if per_us else None,
               "share": round(t / total, 4) if total else None} for i, t in enumerate(ticks)]
    basis = VIRTUAL_LAYER_BASIS if info.get("virtual") else (
        f"instructions retired per layer (emulated board); µs at one instruction per cycle at {mhz} MHz, an estimate"
        if timer == "instructions" else "the device's µs clock around each layer")
    if model_path is not None:
        from tinydeploy.costs import counts
        from tinydeploy.core.boards import load_boards
        from tinydeploy.codegen.engines import ENGINES
        from tinydeploy.core.model import load_model
        model = load_model(model_path)
        board = load_boards().get(str(info.get("board")))
        engine_name = str(info.get("engine", TFLM))
        engine = ENGINES.get(engine_name)
        timed = engine.timed_operators(model) if engine else [op.index for op in model.operators]
        every = {cost.index: cost for cost in counts.layer_costs(model)}
        kernels = board.kernels_for(engine_name) if board is not None else None
        if len(timed) == len(layers):  # the firmware times these operators, in order
            for layer, cost in zip(layers, (every[i] for i in timed)):
                outputs = int(np.prod(cost.output_shape))
                layer.update({"op": cost.op, "shape": list(cost.output_shape), "macs": cost.macs, "work": cost.work,
                              "outputs": outputs})
                if board is not None:  # the profile's cycles per MAC: what every estimate before flashing uses
                    layer["estimate_us"] = round(board.estimate_us(cost.op, cost.work, kernels, outputs), 3)
    return {"timer": timer, "basis": basis, "total_ticks": total, "layers": layers}


def _check_options(baud: int, runs: int, warmup: int, timeout: float, samples, expect_model) -> None:
    for option, value in (("--baud", baud), ("--runs", runs), ("--warmup", warmup), ("--timeout", timeout)):
        check(option, value)
    if samples is not None and expect_model is None:
        raise BadInput("--validate needs --expect-model MODEL.tflite (the host reference)")


def _check_device(conn: Connection, info: dict, expected_sha: str | None, expect_model) -> None:
    """Fail unless the device set its model up, and runs the model expected (when one is)."""
    failure = conn.setup_failure(info)
    if failure:
        raise StepFailed(failure)
    if expected_sha and info.get("model_sha256") != expected_sha:
        raise StepFailed(f"the device runs a different model: device sha256 {info.get('model_sha256')}, "
                         f"expected {expected_sha} ({expect_model})")


def bench(port: str, out: str | Path, baud: int = 115200, runs: int = 20, warmup: int = 2,
          expect_model: str | Path | None = None, samples: tuple[np.ndarray, np.ndarray] | None = None,
          timeout: float = 10.0, reset: bool = True, progress: Callable[[int, int], None] | None = None,
          profile: bool = False) -> BenchResult:
    """Connect to a device, read its info, measure latency and optionally validate it.

    Args:
        port: device path or pyserial URL.
        out: folder for serial.log and results.json (written also on failure).
        baud: line rate.
        runs, warmup: single-inference timings to take, after this many warm-up runs.
        expect_model: the .tflite the board must be running (its SHA-256 is checked).
        samples: raw labelled samples (x, y) to validate on the device against the host TFLM.
        timeout: seconds to wait for any reply.
        reset: pulse the reset line first where the port allows.
        profile: also time each layer on the device (profile_layers), last.

    Returns:
        The result (also in OUT/results.json).

    Raises:
        BadInput: bad options.
        StepFailed: the port, the device or the model check failed; results so far are saved.
    """
    _check_options(baud, runs, warmup, timeout, samples, expect_model)
    from tinydeploy.core.outputs import output_folder, write_atomically
    out = output_folder(out, "--out")
    result = BenchResult(port)

    def save() -> None:  # after every timing and sample: a run that stops keeps what it measured
        write_atomically(out / "results.json", json.dumps(result.to_dict(), indent=2))

    def timed(stats: dict) -> None:
        if result.info.get("timer") == "instructions":
            result.latency_instructions = stats
            save()  # kept even when they can't be converted
        result.latency_us = latency_us(stats, result.info)
        save()

    def validated(figures: dict) -> None:
        result.validation = figures
        save()

    expected_sha = None
    if expect_model is not None:
        from tinydeploy.core.model import load_model
        expected_sha = load_model(expect_model).sha256
        result.expected_sha256 = expected_sha
    conn = None
    try:
        conn = Connection(port, baud, out / "serial.log", timeout)
        was_reset = reset and conn.reset()
        conn.sync(boot_wait=2.0 if was_reset else 0.3)
        result.info = read_info(conn)
        save()
        _check_device(conn, result.info, expected_sha, expect_model)
        timed(measure_latency(conn, result.info, runs, warmup, on_timing=timed))
        if samples is not None:
            validated(validate_on_device(conn, expect_model, *samples, progress=progress,
                                         engine=result.info.get("engine", TFLM),
                                         kernels=result.info.get("kernels"), on_sample=validated))
        if profile:
            result.profile = profile_layers(conn, result.info, expect_model)
            save()
            from tinydeploy.core.report import profile_html
            write_atomically(out / "bench.html", profile_html(result.to_dict()))
        result.complete = True
    except StepFailed as exc:
        result.error = str(exc)
        raise
    except BaseException as exc:  # an interruption, or a bug: still say why the run stopped
        result.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise
    finally:
        if conn is not None:
            conn.close()
        save()
    return result
