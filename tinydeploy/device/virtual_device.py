"""`tinydeploy virtual-device`: a stand-in board on a pty or a TCP port.

It speaks the firmware's protocol (tinydeploy.core.protocol.DeviceProtocol, checked
byte for byte against firmware/td_protocol.c), runs inference on the real TFLM
interpreter, reports TFLM's real arena figures, and times inference with the
host's clock, labelled "virtual" so nobody mistakes it for board latency.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
import tty
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy import __version__
from tinydeploy.runtime import tflm
from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import load_model
from tinydeploy.core.model_frontend import WIRE_DTYPE, device_frontend
from tinydeploy.codegen.render import frontend_info
from tinydeploy.core.names import TFLM
from tinydeploy.core.protocol import VIRTUAL_LAYER_REPEATS, DeviceProtocol, device_info

BUSY_REPLY = "e-[port busy: another client is connected]\r\nm-ready\r\n"


class VirtualDevice:
    """A virtual board for one model.

    Args:
        model_path: the int8 .tflite file it runs.
        baud: when given, output and input are paced to this line rate, as a UART would.
        stop_after: stop answering after this many commands (to test host timeouts).
        marker: called with True before each inference and False after, as the firmware raises
            a power monitor's marker input while it computes (a stand-in monitor's waveform).
        slots: a folder standing for the flash of a firmware rendered with --model-partition for
            this model (tinydeploy.device.slots): the model runs from slot A or B, `model` commands
            upload another into the inactive slot, and the folder keeps them across restarts.
        version: the semantic version of model_path's image when the folder is new (default: the
            model's metadata "version", else 0.1.0).
    """

    def __init__(self, model_path: str | Path, baud: int | None = None, stop_after: int | None = None,
                 marker: Callable[[bool], None] | None = None, slots: str | Path | None = None,
                 version: str | None = None):
        if baud is not None:
            check("--baud", baud)
        self.model = load_model(model_path)
        if not self.model.is_int8:
            raise BadInput(f"{model_path}: the virtual device runs int8 models, as the firmware does; "
                           "this one is not int8 (convert it with full-integer quantization)")
        self.baud = baud
        self.stop_after = stop_after
        self.marker = marker
        self.commands = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.address = ""
        self.flash = self.booted = None
        self.boot_messages: list[str] = []
        if slots is not None:
            self._factory_flash(slots, version)
            self._boot_slots()
        else:
            self._load(self.model)
        self._layer_models = ""  # a folder of one-operator models, made at the first layers%

    def _load(self, model, slot_fields: dict | None = None) -> None:
        """Set the device up for a model: its arena, interpreter and info line."""
        self.model = model
        self.front = device_frontend(self.model)  # takes raw int16 windows and runs the front end first
        self.arena = tflm.measure_arena(self.model)
        self.runner = tflm.TflmRunner(self.model, self.arena.arena_bytes)
        input_tensor, output_tensor = self.model.input_tensors[0], self.model.output_tensors[0]
        self._info = json.dumps({
            "arena_used_bytes": self.arena.arena_bytes, "setup_error": None,
            **device_info(self.model, self.arena.arena_bytes, board="virtual", cpu_mhz=None, engine=TFLM,
                          timer="us", framework="host",
                          tflm=f"tflite-micro {tflm.runtime_version()} (host interpreter)", kernels="reference",
                          tinydeploy=__version__, virtual=True,
                          latency_basis="virtual: host wall clock running the TFLM interpreter, not board latency",
                          arena_basis="TFLM measured on the host (an upper bound for a 32-bit board)",
                          **frontend_info(self.model), **(slot_fields or {})),
        }, separators=(",", ":"))
        self._input_shape = input_tensor.shape[1:]
        self._output_size = output_tensor.elements
        self._layer_models = ""  # a folder of one-operator models, made at the first layers%

    # -- model slots ---------------------------------------------------------------
    def _factory_flash(self, folder: str | Path, version: str | None) -> None:
        """The firmware as `render --model-partition` makes it for this model: its contract
        (exactly its operators, its arena with the reference kernels plus render's default
        margin, its I/O), and, on a new flash, its model as version in slot A."""
        from tinydeploy.codegen import package, partitions
        from tinydeploy.codegen.render import RenderOptions
        from tinydeploy.costs.figures import tflm_library_firmware_arena
        from tinydeploy.device import slots
        measured = tflm.measure_arena(self.model)
        first = package.package(self.model, version or self.model.meta.get("version") or "0.1.0", measured)
        arena = tflm_library_firmware_arena(self.model, measured, "reference", RenderOptions.arena_margin_percent)
        self.contract = package.contract(self.model, TFLM, arena, "reference")
        slot_bytes = next(p.size for p in partitions.layout(4096, len(first)) if p.name == "model_a")
        self.flash = slots.FileFlash(folder, slot_bytes)
        if slots.read_state(self.flash)[0] is None and self.flash.read("model_a", 0, 1) == b"\xff":
            self.flash.write("model_a", 0, first)

    def _boot_slots(self) -> None:
        from tinydeploy.core.model import parse_model
        from tinydeploy.device import slots
        self.booted = slots.boot(self.flash, self.contract)
        self.boot_messages = list(self.booted.messages)
        header = self.booted.image.header
        self._load(parse_model(self.booted.image.model, f"slot {self.booted.slot}"),
                   {"model_slot": self.booted.slot, "model_version": header.version, "model_trial": self.booted.trial})

    class _Slots:
        """The `model` commands on the virtual device's flash (core.protocol.ModelSlots)."""

        def __init__(self, device: "VirtualDevice", restart: Callable[[], None]):
            from tinydeploy.device import slots
            self.device, self._restart = device, restart
            self.upload = slots.Upload(device.flash, device.booted.slot, device.contract)

        def begin(self, size: int) -> str:
            return self.upload.begin(size)

        def chunk(self, data: bytes, crc: int) -> int:
            return self.upload.chunk(data, crc)

        def commit(self) -> str:
            header = self.upload.commit().header
            return f"{self.upload.target} {header.version} {header.model_sha256[:12]}"

        def restart(self) -> None:
            self._restart()

    # -- device behaviour ------------------------------------------------------
    def _invoke(self, data: bytes) -> list[int] | None:
        """One inference; None when the interpreter fails, which the device reports as the
        firmware does (e-[invoke failed])."""
        if self.front is None:
            sample = np.frombuffer(data, dtype=np.int8).reshape(self._input_shape)
        else:
            samples = np.frombuffer(data, dtype=WIRE_DTYPE)
            sample = self.front.features_of_samples(samples)[0].reshape(self._input_shape)
        if self.marker:
            self.marker(True)
        try:
            outputs = [int(v) for v in self.runner.invoke_int8(sample)]
        except Exception:  # noqa: BLE001 - any failure of the interpreter is the device's answer
            outputs = None
        finally:
            if self.marker:
                self.marker(False)
        if self.booted is not None and self.booted.trial:  # the first inference on a slot on trial
            from tinydeploy.device import slots
            if outputs is None:
                slots.failed_first(self.flash, self.booted)  # the next boot runs the last good slot
            else:
                slots.proven(self.flash, self.booted)
        return outputs

    def _profile(self, data: bytes) -> tuple[list[int], list[int]] | None:
        """layers%: one inference's outputs, and each operator's time (protocol.VIRTUAL_LAYER_BASIS);
        None when the interpreter fails."""
        outputs = self._invoke(data)
        if outputs is None:
            return None
        if not self._layer_models:
            folder = tempfile.mkdtemp(prefix="tinydeploy-layers-")
            for index, one in enumerate(tflm.operator_models(self.model)):
                Path(folder, f"{index}.tflite").write_bytes(one)
            self._layer_models = folder
        try:
            times = self.runner.process.time_models(self._layer_models, self.arena.arena_bytes,
                                                       VIRTUAL_LAYER_REPEATS)
        except BadInput:
            return None
        return outputs, [round(us) for us in times]

    def _protocol(self, write, holder: list | None = None) -> DeviceProtocol:
        """The protocol on the current model; with model slots, its `model` commands restart
        the device into the committed slot, replacing holder[0]."""
        def restart() -> None:
            self._boot_slots()
            holder[0] = self._protocol(write, holder)
            self._boot(holder[0])

        slots = self._Slots(self, restart) if self.flash is not None and holder is not None else None
        return DeviceProtocol(write, lambda: time.perf_counter_ns() // 1000, self._invoke, lambda: self._info,
                              self.front.window_bytes if self.front else self.model.input_tensors[0].nbytes,
                              self._output_size, "tinydeploy-virtual",
                              f"{Path(self.model.path).stem} {self.model.sha256[:12]}", profile=self._profile,
                              slots=slots)

    def _boot(self, protocol: DeviceProtocol) -> None:
        """The boot banner, after any slot the boot check refused, named (e-[...])."""
        for message in self.boot_messages:
            protocol.error(message)
        protocol.boot()

    class _Line:
        """One direction of a UART at `baud` (8N1, ten bits a byte): bytes pass no
        faster than the line rate. The line's clock runs on across calls (a sleep
        that overshoots is made up by the next ones, within SLACK) so the
        emulation's own sleeping does not slow the link below its rate."""

        SLACK = 0.005

        def __init__(self, baud: int | None):
            self.baud, self.free_at = baud, 0.0

        def pace(self, count: int) -> None:
            if not self.baud:
                return
            now = time.monotonic()
            self.free_at = max(self.free_at, now - self.SLACK) + count * 10 / self.baud
            if self.free_at > now:
                time.sleep(self.free_at - now)

    def _serve(self, read, write) -> None:
        """Run one session: read bytes, feed the protocol, write its replies.

        Replies go out through their own paced writer thread, so the link is
        full duplex like a real UART.
        """
        import queue
        outgoing: queue.Queue = queue.Queue()
        rx, tx = self._Line(self.baud), self._Line(self.baud)

        def writer() -> None:
            while True:
                data = outgoing.get()
                if data is None:
                    return
                tx.pace(len(data))
                try:
                    write(data)
                except OSError:
                    return

        sender = threading.Thread(target=writer, daemon=True)
        sender.start()
        holder: list = [None]
        holder[0] = self._protocol(outgoing.put, holder)
        self._boot(holder[0])
        try:
            self._session(read, holder, rx)
        finally:
            outgoing.put(None)
            sender.join(timeout=5)

    def _session(self, read, holder: list, rx) -> None:
        while not self._stop.is_set():
            chunk = read()
            if chunk is None:
                continue
            if not chunk:
                return
            for start in range(0, len(chunk), 16):  # bytes arrive a few at a time, as from a UART
                rx.pace(len(chunk[start:start + 16]))
                self._feed(holder[0], chunk[start:start + 16])

    def _feed(self, protocol: DeviceProtocol, chunk: bytes) -> None:
        if self.stop_after is not None:
            left = self.stop_after - self.commands
            if left <= 0:
                return  # gone silent
            ends = [i for i, b in enumerate(chunk) if b == ord("%")]
            if len(ends) >= left:
                chunk = chunk[:ends[left - 1] + 1]
        self.commands += chunk.count(b"%")
        protocol.feed(chunk)

    # -- transports --------------------------------------------------------------
    def open_pty(self) -> str:
        """Serve on a new pseudo-terminal; returns the path to open (like /dev/pts/5)."""
        master, slave = os.openpty()
        tty.setraw(slave)
        self._fds = (master, slave)
        path = os.ttyname(slave)

        def read():
            import select
            ready, _, _ = select.select([master], [], [], 0.1)
            if not ready:
                return None
            try:
                return os.read(master, 4096)
            except OSError:
                return None

        def write(data: bytes) -> None:
            os.write(master, data)

        thread = threading.Thread(target=self._serve, args=(read, write), daemon=True)
        thread.start()
        self._threads.append(thread)
        self.address = path
        return path

    def open_tcp(self, port: int = 0) -> str:
        """Serve on a loopback TCP port; returns the socket:// URL. One client at a time."""
        check("--tcp", port)
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(("127.0.0.1", port))
        except OSError as exc:
            server.close()
            raise BadInput(f"--tcp {port}: can't serve on 127.0.0.1:{port} ({exc.strerror or exc}); "
                           "choose another port, or 0 for any free one") from exc
        server.listen(4)
        server.settimeout(0.2)
        self._server = server
        busy = threading.Lock()

        def session(conn: socket.socket) -> None:
            try:
                self._tcp_session(conn)
            finally:
                busy.release()

        def accept_loop() -> None:
            while not self._stop.is_set():
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not busy.acquire(blocking=False):
                    threading.Thread(target=_refuse_busy, args=(conn,), daemon=True).start()
                    continue
                threading.Thread(target=session, args=(conn,), daemon=True).start()

        thread = threading.Thread(target=accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        self.address = f"socket://127.0.0.1:{server.getsockname()[1]}"
        return self.address

    def _tcp_session(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.1)

            def read():
                try:
                    return conn.recv(4096)
                except socket.timeout:
                    return None
                except OSError:
                    return b""

            try:
                self._serve(read, conn.sendall)
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        if hasattr(self, "_server"):
            self._server.close()
        for thread in self._threads:
            thread.join(timeout=2)
        for fd in getattr(self, "_fds", ()):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._layer_models:
            shutil.rmtree(self._layer_models, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _refuse_busy(conn: socket.socket) -> None:
    """Answer a second client's first command with the busy error, then hang up. (Answering
    at once would be lost: pyserial clears its input when it opens.)"""
    with conn:
        conn.settimeout(5)
        try:
            received = b""
            while b"%" not in received:
                chunk = conn.recv(256)
                if not chunk:
                    return
                received += chunk
            conn.sendall(BUSY_REPLY.encode())
        except OSError:
            pass
