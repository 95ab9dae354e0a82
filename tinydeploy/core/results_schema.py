"""Bench results (OUT/results.json), as data: the fields of each schema version, their kinds
and ranges.

`tinydeploy bench` writes the file (tinydeploy.device.bench.BenchResult); verify, calibrate and
a farm read it back, and check it here before judging anything from it: a hand-edited or
foreign file is refused naming every bad field, rather than passing ("complete": "yes", a
negative latency counted as met) or failing half-way. A file without "schema_version" is read
as version 1, what bench wrote before it recorded one. Fields not listed are kept, unchecked
(a newer firmware's info may say more); a listed field that is absent or null was not measured,
unless it is required.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tinydeploy.core.errors import BadInput

SCHEMA_VERSION = 1  # what bench writes


@dataclass(frozen=True)
class Kind:
    accepted: str  # in words, for messages
    test: Callable[[object], bool]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


KINDS = {
    "text": Kind("text", lambda v: isinstance(v, str)),
    "flag": Kind("true or false", lambda v: isinstance(v, bool)),
    "count": Kind("a whole number >= 0", lambda v: _whole(v) and v >= 0),
    "amount": Kind("a finite number >= 0", lambda v: _number(v) and v >= 0),
    "positive": Kind("a finite number > 0", lambda v: _number(v) and v > 0),
    "fraction": Kind("a number from 0 to 1", lambda v: _number(v) and 0 <= v <= 1),
    "version": Kind(f"a schema version (this tinydeploy reads 1 to {SCHEMA_VERSION})",
                    lambda v: _whole(v) and 1 <= v <= SCHEMA_VERSION),
    "object": Kind("an object", lambda v: isinstance(v, dict)),
}


@dataclass(frozen=True)
class Field:
    """A field: a kind of KINDS, an object's fields (a dict of Field) or a list of such
    objects (a one-item list); required fields must be there and not null."""
    kind: str | dict | list
    required: bool = False


# Timing statistics (tinydeploy.device.latency), in µs or in instructions retired.
STATS = {"runs": Field("count", True), "median": Field("amount", True),
         **{k: Field("amount") for k in ("min", "mean", "p90", "max")},
         "basis": Field("text"), "partial": Field("flag"), "runs_planned": Field("count")}
DEVICE = {"board": Field("text"), "engine": Field("text"), "timer": Field("text"), "cpu_mhz": Field("positive"),
          "virtual": Field("flag"), "model_sha256": Field("text"), "model_bytes": Field("count"),
          "arena_bytes": Field("count"), "arena_used_bytes": Field("count"), "setup_error": Field("text"),
          "model_slot": Field("text"), "model_version": Field("text")}
VALIDATION = {"samples": Field("count", True), "top1_agreement": Field("fraction", True),
              **{k: Field("fraction") for k in ("identical_output_values", "identical_outputs", "device_accuracy",
                                                "host_accuracy")},
              "max_output_diff_lsb": Field("count"), "output_diff_lsb_counts": Field("object"),
              "seconds": Field("amount"), "samples_per_second": Field("amount"), "reference": Field("text"),
              "kernels": Field("text"), "partial": Field("flag"), "samples_planned": Field("count")}
LAYER = {"index": Field("count"), "ticks": Field("amount", True), "us": Field("amount"), "share": Field("fraction"),
         "op": Field("text"), "macs": Field("count"), "work": Field("count"), "outputs": Field("count"),
         "estimate_us": Field("amount")}
# bench --power-monitor's measurement (tinydeploy.device.bench, basis "measured").
POWER = {"monitor": Field("text"), "basis": Field("text"), "energy_uj": Field("amount"), "inference_ms": Field("amount"),
         "active_ma": Field("amount"), "idle_ma": Field("amount"), "sample_rate_hz": Field("positive"),
         "partial": Field("flag"), "error": Field("text"), "samples": Field("count"), "recording": Field("text")}
PROFILE = {"timer": Field("text"), "basis": Field("text"), "total_ticks": Field("amount"), "layers": Field([LAYER])}

SCHEMAS = {
    1: {"schema_version": Field("version"), "port": Field("text"), "virtual": Field("flag"),
        "device": Field(DEVICE, True), "model_sha256": Field("text"), "expected_sha256": Field("text"),
        "model_bytes": Field("count"), "arena_bytes": Field("count"), "arena_used_bytes": Field("count"),
        "model_slot": Field("text"), "model_version": Field("text"),
        "latency_us": Field(STATS), "latency_instructions": Field(STATS),
        "validation": Field(VALIDATION), "profile": Field(PROFILE), "power": Field(POWER), "complete": Field("flag"), "error": Field("text")},
}


def _problems(value, field: Field, where: str) -> list[str]:
    """Every way value is not what field says, each naming its place (latency_us.median)."""
    if value is None:
        return [f"{where} is missing"] if field.required else []
    kind = field.kind
    if isinstance(kind, str):
        return [] if KINDS[kind].test(value) else [f"{where}={_shown(value)} (needs {KINDS[kind].accepted})"]
    if isinstance(kind, list):
        if not isinstance(value, list):
            return [f"{where}={_shown(value)} (needs a list)"]
        return [p for i, item in enumerate(value) for p in _problems(item, Field(kind[0], True), f"{where}[{i}]")]
    if not isinstance(value, dict):
        return [f"{where}={_shown(value)} (needs an object)"]
    return [p for key, sub in kind.items() for p in _problems(value.get(key), sub, f"{where}.{key}" if where else key)]


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate(results, origin: str | Path) -> dict:
    """results, when they are bench results of a schema version this tinydeploy reads, every
    field of the kind and in the range that version says.

    Args:
        results: the parsed JSON.
        origin: where it came from, for messages.

    Returns:
        results, unchanged.

    Raises:
        BadInput: not bench results, a version this tinydeploy doesn't read, or every bad field.
    """
    if not isinstance(results, dict) or "device" not in results:
        raise BadInput(f"{origin}: not a tinydeploy bench results file (no 'device' object)")
    version = results.get("schema_version", 1)
    if not (_whole(version) and version in SCHEMAS):
        raise BadInput(f"{origin}: results schema version {_shown(version)}; this tinydeploy reads versions "
                       f"{', '.join(map(str, SCHEMAS))} (a newer tinydeploy wrote it? upgrade to read it)")
    problems = _problems(results, Field(SCHEMAS[version], True), "")
    if problems:
        raise BadInput(f"{origin}: not valid bench results (schema version {version}): {'; '.join(problems)}")
    return results
