"""`tinydeploy bench`: read the truth back from a board over serial.

It connects (connection), times inference (latency), and optionally validates
outputs (validation) and times each layer (profiling). Everything received is
logged to OUT/serial.log as it arrives, and OUT/results.json is written even when
a run fails half-way, so nothing measured is lost.
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
                "arena_used_bytes": self.info.get("arena_used_bytes"), "latency_us": self.latency_us,
                "latency_instructions": self.latency_instructions,
                "validation": self.validation, "profile": self.profile, "complete": self.complete,
                "error": self.error}


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
          profile: bool = False, force: bool = False) -> BenchResult:
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

    Returns:
        The result (also in OUT/results.json).

    Raises:
        BadInput: bad options, or files of the user's in out.
        StepFailed: the port, the device or the model check failed, or another run writes into
            out; results so far are saved.
    """
    _check_options(baud, runs, warmup, timeout, samples, expect_model)
    check_port(port)
    with run_folder(out, OUTPUTS + (PROFILE_PAGE,) * profile, force) as folder:
        return _bench(port, folder, baud, runs, warmup, expect_model, samples, timeout, reset, progress, profile)


def _bench(port: str, out: Path, baud: int, runs: int, warmup: int, expect_model, samples, timeout: float,
           reset: bool, progress, profile: bool) -> BenchResult:
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
        save()
    return result
