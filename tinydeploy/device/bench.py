"""`tinydeploy bench`: read the truth back from a board over serial.

It connects (connection), times inference (latency), and optionally validates
outputs (validation) and times each layer (profiling). With a power monitor
(tinydeploy.device.power) it records the board's current during the timed runs and
stores the measured energy per inference. Everything received is logged to
OUT/serial.log as it arrives, and OUT/results.json is written even when a run
fails half-way, so nothing measured is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput, StepFailed
from tinydeploy.core.names import TFLM
from tinydeploy.core.outputs import run_folder, write_atomically
from tinydeploy.core.ports import check_port
from tinydeploy.core.results_schema import SCHEMA_VERSION
from tinydeploy.device.connection import Connection, read_info
from tinydeploy.device.latency import latency_us, measure_latency
from tinydeploy.device.power import (MonitorSpec, MonitorStopped, PowerMonitor, Recording, open_monitor,
                                     parse_power_monitor)
from tinydeploy.device.power_measure import MEASURED, integrate
from tinydeploy.device.profiling import profile_layers
from tinydeploy.device.validation import validate_on_device


OUTPUTS = ("results.json", "serial.log")  # what bench writes into OUT
PROFILE_PAGE = "bench.html"  # and with --profile, the per-layer chart


@dataclass
class BenchResult:
    port: str
    info: dict = field(default_factory=dict)
    latency_us: dict | None = None
    latency_instructions: dict | None = None  # emulated boards: instructions retired per inference
    validation: dict | None = None
    profile: dict | None = None  # each layer's time (bench --profile)
    power: dict | None = None  # bench --power-monitor: measured energy per inference, or why there is none
    expected_sha256: str | None = None
    complete: bool = False
    error: str | None = None

    @property
    def virtual(self) -> bool:
        return bool(self.info.get("virtual"))

    def to_dict(self) -> dict:
        return {"schema_version": SCHEMA_VERSION, "port": self.port, "virtual": self.virtual, "device": self.info,
                "model_sha256": self.info.get("model_sha256"), "expected_sha256": self.expected_sha256,
                "model_bytes": self.info.get("model_bytes"), "arena_bytes": self.info.get("arena_bytes"),
                # a firmware with model slots (render --model-partition): which slot ran, and its version
                "model_slot": self.info.get("model_slot"), "model_version": self.info.get("model_version"),
                "arena_used_bytes": self.info.get("arena_used_bytes"), "latency_us": self.latency_us,
                "latency_instructions": self.latency_instructions,
                "validation": self.validation, "profile": self.profile, "power": self.power, "complete": self.complete,
                "error": self.error}


def _check_options(baud: int, runs: int, warmup: int, timeout: float, samples, expect_model) -> None:
    for option, value in (("--baud", baud), ("--runs", runs), ("--warmup", warmup), ("--timeout", timeout)):
        check(option, value)
    if samples is not None and expect_model is None:
        raise BadInput("--validate needs --expect-model MODEL.tflite (the host reference)")


POWER_IDLE_S = 0.5  # idle recorded after the timed runs, for the idle current
POWER_SAMPLES = "power.npz"  # the monitor's recording, beside results.json


def _power_spec(power_monitor: str | None, power_voltage: float) -> MonitorSpec | None:
    """The monitor asked for, checked before any port is touched."""
    check("--power-voltage", power_voltage)
    return parse_power_monitor(power_monitor) if power_monitor is not None else None


def _save_recording(recording: Recording, path: Path) -> None:
    """The monitor's samples, so a measurement can be checked (or one cut short examined) later."""
    marks = {"marker": recording.marker} if recording.marker is not None else {"events": np.asarray(recording.events)}
    np.savez_compressed(path, current_a=recording.current_a, voltage_v=np.asarray(recording.voltage_v),
                        sample_rate_hz=recording.sample_rate_hz, **marks)


def _power_recorder(monitor: PowerMonitor, runs: int, out: Path, result: "BenchResult", failures: list,
                    save: Callable[[], None]) -> Callable:
    """What measure_latency hands the timed runs to: the monitor records them and the idle after,
    and the result's power is the measurement, or (the monitor stopped, no window marked) the
    error with the samples kept in OUT/power.npz. The device's own failures pass through."""
    def record(run: Callable[[], None]) -> None:
        try:
            recording = monitor.record(run, idle_s=POWER_IDLE_S)
        except MonitorStopped as exc:
            kept = exc.recording
            if kept is not None:
                _save_recording(kept, out / POWER_SAMPLES)
            result.power = {"monitor": monitor.label, "basis": MEASURED, "partial": True, "error": str(exc),
                            "samples": kept.samples if kept else 0,
                            "sample_rate_hz": kept.sample_rate_hz if kept else monitor.sample_rate_hz,
                            "recording": POWER_SAMPLES if kept is not None else None}
            failures.append(exc)
            save()
            return
        _save_recording(recording, out / POWER_SAMPLES)
        try:
            result.power = {**integrate(recording, runs).to_dict(), "recording": POWER_SAMPLES}
        except StepFailed as exc:  # no marked window, or a count that matches no inference count
            result.power = {"monitor": monitor.label, "basis": MEASURED, "error": str(exc),
                            "samples": recording.samples, "sample_rate_hz": recording.sample_rate_hz,
                            "recording": POWER_SAMPLES}
            failures.append(exc)
        save()
    return record


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
          profile: bool = False, force: bool = False, power_monitor: str | None = None,
          power_voltage: float = 3.3, min_agreement: float | None = None,
          boards_dir: tuple[str | Path, ...] = ()) -> BenchResult:
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
        force: write over files in out that tinydeploy did not write (tinydeploy.core.outputs.claim).
        power_monitor: a power monitor, KIND[:PORT] (tinydeploy.device.power), opened before the
            board is reached (it may power it); it records the timed runs, each marked by the
            firmware on the monitor's marker input, and the result's power is the measured µJ per
            inference, idle current and sample rate (its samples in OUT/power.npz).
        power_voltage: the supply voltage the monitor gives the board (or the board's own supply).
        min_agreement: with samples, the smallest top-1 agreement with the host reference the run
            accepts (1: the device must agree on every sample); None judges nothing.
        boards_dir: folders of user board profiles, for profile's per-layer estimates.

    Returns:
        The result (also in OUT/results.json).

    Raises:
        BadInput: bad options, or files of the user's in out.
        StepFailed: the port, the device, the model check or the power monitor failed (a monitor
            that stops answering keeps its samples), another run writes into out, or the device
            agreed with the host on fewer samples than min_agreement; results so far are saved.
    """
    _check_options(baud, runs, warmup, timeout, samples, expect_model)
    if min_agreement is not None:
        check("--min-agreement", min_agreement)
    check_port(port)
    power_spec = _power_spec(power_monitor, power_voltage)
    monitor = open_monitor(power_spec, voltage_v=power_voltage) if power_spec else None  # checks its options
    names = OUTPUTS + (PROFILE_PAGE,) * profile + (POWER_SAMPLES,) * (monitor is not None)
    with run_folder(out, names, force) as folder:
        result = _bench(port, folder, baud, runs, warmup, expect_model, samples, timeout, reset, progress, profile,
                        monitor, tuple(boards_dir))
    _check_agreement(result.validation, min_agreement)
    return result


def _check_agreement(validation: dict | None, min_agreement: float | None) -> None:
    """Device truth: a device whose answers differ from the host's on more samples than
    min_agreement allows fails the bench (its results are saved)."""
    if min_agreement is None or not validation or validation.get("top1_agreement", 1.0) >= min_agreement:
        return
    raise StepFailed(f"the device agreed with the host reference ({validation.get('reference', 'host')}) on "
                     f"{validation['top1_agreement']:.2%} of {validation['samples']} samples, below --min-agreement "
                     f"{min_agreement:g} (outputs up to {validation.get('max_output_diff_lsb')} LSB apart; device "
                     f"accuracy {validation.get('device_accuracy')}, host {validation.get('host_accuracy')}); "
                     "its kernels compute this model differently. Results are saved; lower --min-agreement to "
                     "accept the difference")


def _bench(port: str, out: Path, baud: int, runs: int, warmup: int, expect_model, samples, timeout: float,
           reset: bool, progress, profile: bool, monitor: PowerMonitor | None,
           boards_dir: tuple = ()) -> BenchResult:
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
    power_failures: list[StepFailed] = []
    try:
        if monitor is not None:
            monitor.open()
        conn = Connection(port, baud, out / "serial.log", timeout)
        was_reset = reset and conn.reset()
        conn.sync(boot_wait=2.0 if was_reset else 0.3)
        result.info = read_info(conn)
        save()
        _check_device(conn, result.info, expected_sha, expect_model)
        record = _power_recorder(monitor, runs, out, result, power_failures, save) if monitor else None
        timed(measure_latency(conn, result.info, runs, warmup, on_timing=timed, record=record))
        if power_failures:
            raise power_failures[0]
        if samples is not None:
            validated(validate_on_device(conn, expect_model, *samples, progress=progress,
                                         engine=result.info.get("engine", TFLM),
                                         kernels=result.info.get("kernels"), on_sample=validated))
        if profile:
            result.profile = profile_layers(conn, result.info, expect_model, boards_dir)
            save()
            from tinydeploy.core.report import profile_html
            write_atomically(out / PROFILE_PAGE, profile_html(result.to_dict()))
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
        if monitor is not None:
            monitor.close()
        save()
    return result
