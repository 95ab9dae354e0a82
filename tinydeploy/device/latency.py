"""Latency on the device: single inferences timed by the device's own stamps.

The stamps are microseconds on a board, or instructions retired on an emulated
one (info's "timer"); latency_us turns the latter into an estimate in µs.
"""

from __future__ import annotations

import json
import statistics
from typing import Callable

import numpy as np

from tinydeploy.core.errors import StepFailed
from tinydeploy.core.protocol import Line
from tinydeploy.device.connection import Connection, load_input


def _latency_stats(samples: list[float], virtual: bool) -> dict:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(np.ceil(0.9 * len(ordered))) - 1)]
    return {"runs": len(samples), "min": min(samples), "median": statistics.median(samples),
            "mean": round(statistics.fmean(samples), 2), "p90": p90, "max": max(samples),
            "basis": ("virtual: host clock running the TFLM interpreter, not board latency" if virtual
                      else "device m-lap-us stamps")}


def _laps(lines: list[Line]) -> list[int]:
    return [line.value for line in lines if line.kind == "lap"]


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
                    on_timing: Callable[[dict], None] | None = None,
                    record: Callable[[Callable[[], None]], None] | None = None) -> dict:
    """Time `runs` single inferences (after `warmup`) from the device's own stamps
    (microseconds, or instructions retired on an emulated board: info's "timer").
    on_timing gets the statistics so far after every timing (marked partial until the last),
    so that a run that stops half-way keeps what it measured. record, when given, is handed the
    timed runs (after the warm-up) to call while it records them (a power monitor's measure)."""
    window = info.get("window")
    if window:  # the device takes a raw window (int16 samples) and runs its front end: zeros
        load_input(conn, bytes(2 * int(np.prod(window))))
    else:
        zero = info.get("input", {}).get("zero_point", 0)
        size = int(np.prod(info.get("input", {}).get("shape", [0])))
        load_input(conn, np.full(size, zero, dtype=np.int8).tobytes())
    if warmup:
        conn.command(f"infer 1 {warmup}")
    samples: list[int] = []

    def timed_runs() -> None:
        for _ in range(runs):
            laps = _laps(conn.command("infer 1 0"))
            if len(laps) != 2:
                raise StepFailed(f"expected two m-lap-us stamps, got {laps}")
            samples.append(laps[1] - laps[0])
            if on_timing and len(samples) < runs:
                on_timing({**_timer_stats(samples, info), "partial": True, "runs_planned": runs})

    (record or (lambda run: run()))(timed_runs)
    return _timer_stats(samples, info)


def _timer_stats(samples: list[int], info: dict) -> dict:
    stats = _latency_stats(samples, bool(info.get("virtual")))
    if info.get("timer") == "instructions":
        stats["basis"] = "minstret: instructions retired per inference, exact and repeatable under QEMU -icount"
    return stats
