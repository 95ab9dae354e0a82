"""Both sides of the device protocol (docs/protocol.md).

``DeviceProtocol`` is the device side, line for line what firmware/td_protocol.c
does; the virtual device runs it, and a test feeds the same scripts to both and
compares the bytes. ``parse_line`` is the host side's reader: it picks protocol
lines out of boot noise and never invents a figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Protocol

from tinydeploy.core.errors import BadInput

# The same constants as firmware/td_protocol.h (a test reads them from there).
MAX_COMMAND = 80  # TD_MAX_COMMAND: MLPerf Tiny's longest command
INFO_SIZE = 768  # TD_INFO_SIZE: the buffer `info%` fills, so the info line is at most INFO_SIZE - 1 bytes
MAX_COUNT = 1_000_000_009  # TD_MAX_COUNT: the largest N the firmware's parse_count takes

# Every line the device can print starts with one of these.
_TOKEN = re.compile(r"(m-(?:init-done|ready|name-dut-\[|profile-\[|model-\[|info-|\[Expecting |load-done|"
                    r"model-(?:slot|chunk|committed)-\[|warmup-start-|warmup-done|infer-start-|lap-us-|infer-done|results-\[|layer-)|e-\[)")


# The virtual device's layers%: each operator alone on the host's TFLM interpreter (its info%
# says "virtual": true; the basis is not sent, to keep the info line short).
VIRTUAL_LAYER_REPEATS = 20
VIRTUAL_LAYER_BASIS = (f"virtual: host wall clock of each operator run alone on the TFLM interpreter (median of "
                       f"{VIRTUAL_LAYER_REPEATS} runs on zeros, whole µs), not board latency")


def device_info(model, arena_bytes: int, **fields) -> dict:
    """The `info%` object that firmware and the virtual device both report (docs/protocol.md):
    the model's identity and I/O, its arena, then fields (board, cpu_mhz, engine, timer, ...).
    model: a tinydeploy.core.model.Model."""
    def io(tensor):
        q = tensor.quantization
        return {"shape": list(tensor.shape), "dtype": tensor.dtype.lower(), "scale": q.scales[0] if q else 1.0,
                "zero_point": q.zero_points[0] if q else 0}

    return {"arena_bytes": arena_bytes, "model_sha256": model.sha256, "model_bytes": model.size_bytes,
            "input": io(model.input_tensors[0]), "output": io(model.output_tensors[0]), **fields}


MAX_CHUNK = 1024  # TD_MAX_CHUNK: the largest `model chunk L` (firmware/td_slots.h)


class ModelSlots(Protocol):
    """A device's model slots, for the `model` commands (docs/model-update.md). Each method
    raises BadInput with the device's words when it refuses."""

    def begin(self, size: int) -> str:
        """Erase the inactive slot for an image of size bytes; returns the slot's name."""

    def chunk(self, data: bytes, crc: int) -> int:
        """Check the chunk's CRC-32 and write it on; returns the bytes received so far."""

    def commit(self) -> str:
        """Check the whole image and mark its slot to try; returns "SLOT VERSION SHA12"."""

    def restart(self) -> None:
        """Boot again (after the commit's reply), as the firmware restarts into the new slot."""


@dataclass(frozen=True)
class Line:
    kind: str  # "ready", "init", "error", "lap", "results", "info", "name", "layer", "other-m", "noise"
    text: str  # the protocol line (from its token on), or the raw noise
    value: object = None  # int (lap), list[int] (results), (index, ticks) (layer), str (error, info, name)


def parse_line(raw: str) -> Line:
    """Classify one received line. Anything that is not a well-formed protocol line is noise."""
    match = _TOKEN.search(raw)
    if match is None:
        return Line("noise", raw)
    text = raw[match.start():].rstrip()
    if text == "m-ready":
        return Line("ready", text)
    if text == "m-init-done":
        return Line("init", text)
    if text.startswith("e-["):
        return Line("error", text, text[3:-1] if text.endswith("]") else text[3:]) if text.endswith("]") \
            else Line("noise", raw)
    if text.startswith("m-lap-us-"):
        digits = text[len("m-lap-us-"):]
        return Line("lap", text, int(digits)) if digits.isdigit() else Line("noise", raw)
    if text.startswith("m-results-["):
        body = text[len("m-results-["):]
        if not body.endswith("]"):
            return Line("noise", raw)
        try:
            values = [int(v) for v in body[:-1].split(",")] if body[:-1] else []
        except ValueError:
            return Line("noise", raw)
        return Line("results", text, values) if all(-128 <= v <= 127 for v in values) else Line("noise", raw)
    if text.startswith("m-layer-"):
        index, _, ticks = text[len("m-layer-"):].partition("-")
        return Line("layer", text, (int(index), int(ticks))) if index.isdigit() and ticks.isdigit() \
            and index.isascii() and ticks.isascii() else Line("noise", raw)
    if text.startswith("m-info-"):
        return Line("info", text, text[len("m-info-"):])
    if text.startswith("m-name-dut-[") and text.endswith("]"):
        return Line("name", text, text[len("m-name-dut-["):-1])
    return Line("other-m", text)


class DeviceProtocol:
    """The device side, fed byte by byte; a Python twin of firmware/td_protocol.c that
    answers with the same bytes (tests/test_protocol.py proves it on random scripts).

    Text inside is bytes held as latin-1 characters, one character per byte, as the C code
    sees them; the device's own strings (name, model, info) are sent as UTF-8.

    Args:
        write: sends bytes to the host.
        micros: a microsecond clock.
        invoke: runs the model on the input bytes and returns the int8 outputs (a list),
            or None when the run failed (the firmware's "invoke failed").
        info: returns the info JSON line.
        profile: runs the model once on the input bytes, timing each layer: (the int8 outputs,
            the layers' durations), or None when the run failed; None when the device has no
            per-layer profile.
        input_size: the model's input size in bytes.
        name, model: for ``name%`` and ``profile%``.
        ready: False when the model could not be set up.
    """

    def __init__(self, write: Callable[[bytes], None], micros: Callable[[], int],
                 invoke: Callable[[bytes], list | None], info: Callable[[], str], input_size: int,
                 output_size: int, name: str, model: str, ready: bool = True,
                 profile: Callable[[bytes], tuple[list, list[int]] | None] | None = None,
                 slots: ModelSlots | None = None):
        self._write, self._micros, self._invoke, self._info = write, micros, invoke, info
        self._profile = profile
        self._slots = slots  # None: the model lives in the application, `model` is an unknown command
        self._raw = bytearray()  # the bytes of a `model chunk` still arriving
        self._raw_left = 0
        self._raw_crc = 0
        self.input = bytearray(input_size)
        self.output = [0] * output_size
        self.name, self.model, self.ready = _as_bytes(name), _as_bytes(model), ready
        self._line = ""
        self._overflow = False
        self.expected = 0
        self.loaded = 0

    def _emit(self, text: str) -> None:
        self._write((text + "\r\n").encode("latin-1"))

    def error(self, message: str) -> None:
        self._emit(f"e-[{message}]")

    def boot(self) -> None:
        self._emit("m-init-done")
        self._emit("m-ready")

    def feed(self, data: bytes) -> None:
        """Handle received bytes; every '%' ends a command (line breaks are ignored), except
        inside a `model chunk`'s raw bytes."""
        while data:
            if self._raw_left:
                take = data[:self._raw_left]
                self._raw += take
                self._raw_left -= len(take)
                data = data[len(take):]
                if not self._raw_left:
                    self._chunk_done()
                continue
            end = data.find(b"%")
            if end < 0:
                self._feed_text(data.decode("latin-1"))
                return
            self._feed_text(data[:end + 1].decode("latin-1"))
            data = data[end + 1:]

    def _feed_text(self, text: str) -> None:
        while text:
            end = text.find("%")
            part = (text if end < 0 else text[:end]).replace("\r", "").replace("\n", "")
            room = MAX_COMMAND - len(self._line)
            if len(part) > room:
                self._overflow = True
            self._line += part[:room]
            if end < 0:
                return
            if self._overflow:
                self.error(f"command longer than {MAX_COMMAND} characters")
                self._emit("m-ready")
            else:
                self._execute(self._line)
            self._line, self._overflow = "", False
            text = text[end + 1:]

    def _results(self) -> None:
        self._emit("m-results-[" + ",".join(str(v) for v in self.output) + "]")

    def _execute(self, line: str) -> None:
        line = line.partition("\0")[0]  # C strings end at the first NUL byte
        command, _, args = line.partition(" ")
        if command == "name":
            self._emit(f"m-name-dut-[{self.name}]")
        elif command == "profile":
            self._emit("m-profile-[tinydeploy]")
            self._emit(f"m-model-[{self.model}]")
        elif command == "info":
            self._emit("m-info-" + _as_bytes(self._info())[:INFO_SIZE - 1])
        elif not self.ready and command in ("db", "infer", "results", "layers"):
            self.error("the model is not set up (see the error printed at boot)")
        elif command == "db":
            self._db(args)
        elif command == "infer":
            self._infer(args)
        elif command == "results":
            self._results()
        elif command == "layers":
            self._layers()
        elif command == "model" and self._slots is not None:
            if self._model(args):
                return  # a chunk: the reply follows its raw bytes
        else:
            self.error(f"unknown command '{command}'")
        self._emit("m-ready")

    @staticmethod
    def _count(token: str | None) -> int | None:
        """parse_count: ASCII digits only, any leading zeros, at most MAX_COUNT."""
        if not token:
            return None
        value = 0
        for c in token:
            if not "0" <= c <= "9" or value > MAX_COUNT // 10:
                return None
            value = value * 10 + ord(c) - ord("0")
        return value

    def _db(self, args: str) -> None:
        if args.startswith("load") and args[4:5] in (" ", ""):
            count = self._count(args[5:] if len(args) > 4 else None)
            if not count:
                self.error("db load needs a byte count: db load N%")
            elif count != len(self.input):
                self.error(f"db load {count}: the model input is {len(self.input)} bytes")
            else:
                self.expected, self.loaded = count, 0
                self._emit(f"m-[Expecting {count} bytes]")
            return
        if self.expected == 0:
            self.error("db data before db load N")
            return
        if not args or len(args) % 2:
            self.error("db data must be an even number of hex digits")
            return
        if any(c not in "0123456789abcdefABCDEF" for c in args):
            self.error("db data must be hex digits")
            return
        data = bytes.fromhex(args)
        if self.loaded + len(data) > self.expected:
            self.error(f"db data exceeds the {self.expected} bytes announced")
            self.expected, self.loaded = 0, 0
            return
        self.input[self.loaded:self.loaded + len(data)] = data
        self.loaded += len(data)
        if self.loaded == self.expected:
            self._emit("m-load-done")

    def _infer(self, args: str) -> None:
        runs_text, space, warmup_text = args.partition(" ")
        runs = self._count(runs_text)
        warmup = self._count(warmup_text) if space else 0
        if runs is None or warmup is None:
            self.error("usage: infer N W% (N runs after W warm-up runs)")
            return
        if runs == 0:
            self.error("infer needs a count of at least 1")
            return
        if self.expected == 0 or self.loaded != self.expected:
            self.error("no input loaded: send db load N% and the data first")
            return
        self._emit(f"m-warmup-start-{warmup}")
        if not self._run(warmup):
            return
        self._emit("m-warmup-done")
        self._emit(f"m-infer-start-{runs}")
        start = self._micros()  # both stamps are printed after the runs, as the firmware does
        if not self._run(runs):
            return
        end = self._micros()
        self._emit(f"m-lap-us-{start}")
        self._emit(f"m-lap-us-{end}")
        self._emit("m-infer-done")
        self._results()

    def _model(self, args: str) -> bool:
        """`model begin N`, `model chunk L CRC` (then L raw bytes), `model commit`. True when
        the reply waits for a chunk's bytes."""
        verb, _, rest = args.partition(" ")
        if verb == "chunk":
            length_text, _, crc_text = rest.partition(" ")
            length = self._count(length_text)
            if not length or length > MAX_CHUNK or len(crc_text) != 8 or \
                    any(c not in "0123456789abcdefABCDEF" for c in crc_text):
                self.error(f"usage: model chunk L CRC% (1 to {MAX_CHUNK} bytes, CRC-32 as 8 hex digits), then the bytes")
                return False
            self._raw, self._raw_left, self._raw_crc = bytearray(), length, int(crc_text, 16)
            return True
        try:
            if verb == "begin":
                size = self._count(rest)
                if size is None:
                    self.error("usage: model begin N% (the image's size in bytes)")
                    return False
                slot = self._slots.begin(size)
                self._emit(f"m-model-slot-[{slot}]")
                self._emit(f"m-[Expecting {size} bytes]")
            elif verb == "commit":
                done = self._slots.commit()
                self._emit(f"m-model-committed-[{done}]")
                self._emit("m-ready")
                self._slots.restart()
                return True
            else:
                self.error("usage: model begin N%, model chunk L CRC%, model commit%")
        except BadInput as exc:
            self.error(str(exc))
        return False

    def _chunk_done(self) -> None:
        try:
            received = self._slots.chunk(bytes(self._raw), self._raw_crc)
            self._emit(f"m-model-chunk-[{received}]")
        except BadInput as exc:
            self.error(str(exc))
        self._emit("m-ready")

    def _layers(self) -> None:
        if self._profile is None:
            self.error("this firmware has no per-layer profile")
            return
        if self.expected == 0 or self.loaded != self.expected:
            self.error("no input loaded: send db load N% and the data first")
            return
        profiled = self._profile(bytes(self.input))
        if not profiled or not profiled[1]:
            self.error("invoke failed")
            return
        self.output, durations = profiled
        for index, ticks in enumerate(durations):
            self._emit(f"m-layer-{index}-{ticks}")

    def _run(self, times: int) -> bool:
        """Invoke the model `times` times; on a failed run, say so and stop (False)."""
        for _ in range(times):
            output = self._invoke(bytes(self.input))
            if output is None:
                self.error("invoke failed")
                return False
            self.output = output
        return True


def _as_bytes(text: str) -> str:
    """UTF-8 text as one latin-1 character per byte, as the firmware holds its strings."""
    return text.encode("utf-8").decode("latin-1")
