"""`tinydeploy calibrate`: a board's per-operator costs, learned from its own measurements.

From one or more `bench --profile` runs (results.json with each layer's time, op and work),
it fits, per operator kind, cycles = per_unit × work + per_output × outputs + fixed by least
squares (work: the layer's MACs, or its largest tensor's elements for an op without MACs,
tinydeploy.costs.counts; outputs: a MAC op's output elements, each requantized once), checks the
fit is sane (no negative cost), and writes a user board profile whose estimates for that
engine use it (a "calibrated" kernel set, tied to the engine the runs came from: TFLM's
kernels and the C engine's cost differently on one board). A kind measured at one size only
gets a proportional fit with no fixed cost, and says so; a kind with no sane fit keeps the
profile's own coefficients and is listed as uncalibrated.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tinydeploy.core.boards import CALIBRATED, Board, parse_board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.names import TFLM
from tinydeploy.core.outputs import run_folder, write_atomically


@dataclass
class Calibration:
    board: Board  # the calibrated profile
    path: Path  # where it was written
    fitted: dict  # op -> {"per_unit", "per_output", "fixed", "how", "layers"}
    uncalibrated: dict  # op -> why
    before: dict  # error figures of the board's own estimates on the runs
    after: dict  # the same, with the calibrated profile

    def to_dict(self) -> dict:
        return {"profile": str(self.path), "board": self.board.name, "fitted": self.fitted,
                "uncalibrated": self.uncalibrated, "error_before": self.before, "error_after": self.after}


def _measured_layers(results: dict, origin: str, board: Board) -> list[dict]:
    """The profiled layers of one bench run, with their cycles."""
    profile = results.get("profile") if isinstance(results, dict) else None
    if not isinstance(profile, dict) or not profile.get("layers"):
        raise BadInput(f"{origin}: no per-layer profile; run `tinydeploy bench --profile --expect-model MODEL` first")
    device = results.get("device") or {}
    if device.get("board") != board.name:
        raise BadInput(f"{origin} was measured on board '{device.get('board')}', not {board.name}")
    layers = profile["layers"]
    if any("work" not in layer for layer in layers):
        raise BadInput(f"{origin}: the layers are not matched to the model's operators; bench with --expect-model")
    per_cycle = 1.0 if profile.get("timer") == "instructions" else float(board.cpu_mhz)  # µs -> cycles
    engine = str(device.get("engine", TFLM))
    return [{"op": layer["op"], "work": int(layer["work"]), "macs": int(layer["macs"]),
             "outputs": int(layer.get("outputs", 0)), "cycles": layer["ticks"] * per_cycle, "run": origin,
             "engine": engine} for layer in layers]


def _fit(points: list[dict]) -> tuple[float, float, float, str] | str:
    """(cycles per unit of work, per output element, fixed), and how they were fitted; or why
    no sane fit exists. A MAC op is fitted on its MACs and its outputs (each output is
    requantized once, whatever its number of MACs). No coefficient may be negative: the fit
    is the least-squares one with every coefficient >= 0 (found exactly, by solving on each
    subset of the terms the measured layers determine and keeping the best non-negative one)."""
    from itertools import combinations
    work = np.array([p["work"] for p in points], dtype=float)
    outputs = np.array([p["outputs"] if p["macs"] else 0 for p in points], dtype=float)
    cycles = np.array([p["cycles"] for p in points], dtype=float)
    if not work.any():
        return "no layer of a size to fit on"
    columns = {0: work, 1: outputs, 2: np.ones_like(work)}
    best = None
    for size in (3, 2, 1):
        for terms in combinations((0, 1, 2) if outputs.any() else (0, 2), size):
            if 0 not in terms or len(points) < size:
                continue  # the time must grow with the work
            design = np.stack([columns[t] for t in terms], 1)
            if np.linalg.matrix_rank(design) < size:
                continue
            solution, *_ = np.linalg.lstsq(design, cycles, rcond=None)
            residual = float(np.sum((design @ solution - cycles) ** 2))
            if (solution >= 0).all() and solution[0] > 0 and (best is None or residual < best[0] - 1e-9):
                best = (residual, dict(zip(terms, map(float, solution))))
    if best is None:
        return "its time does not grow with its size on these runs"
    fit = best[1]
    names = {0: "work", 1: "outputs", 2: "a fixed cost"}
    how = ("proportional: one size measured, so no fixed cost" if np.ptp(work) == 0 else
           "non-negative least squares on " + ", ".join(names[t] for t in sorted(fit)))
    return fit.get(0, 0.0), fit.get(1, 0.0), fit.get(2, 0.0), how


def _errors(board: Board, layers: list[dict], engine: str) -> dict:
    """How far the board's estimates for the engine are from the measured layers and runs:
    median and largest relative error per layer (layers over 1% of their run), and per whole run."""
    per_layer, runs = [], {}
    kernels = board.kernels_for(engine)
    for layer in layers:
        estimate = board.estimate_us(layer["op"], layer["work"], kernels, layer["outputs"]) * board.cpu_mhz
        run = runs.setdefault(layer["run"], [0.0, 0.0])
        run[0] += layer["cycles"]
        run[1] += estimate
        layer["estimate"] = estimate
    for layer in layers:
        if layer["cycles"] > 0.01 * runs[layer["run"]][0]:
            per_layer.append(abs(layer["estimate"] - layer["cycles"]) / layer["cycles"])
    whole = [abs(estimate - measured) / measured for measured, estimate in runs.values() if measured]
    return {"median_layer_error": round(statistics.median(per_layer), 4) if per_layer else None,
            "max_layer_error": round(max(per_layer), 4) if per_layer else None,
            "network_errors": {run: round(abs(e - m) / m, 4) for run, (m, e) in runs.items() if m},
            "median_network_error": round(statistics.median(whole), 4) if whole else None}


def calibrated_board(board: Board, fitted: dict[str, tuple[float, float, float, str]], source: str,
                     engine: str) -> Board:
    """The board with a "calibrated" kernel set for the engine: the fitted kinds, and the
    coefficients the engine's estimates used so far for the rest."""
    base = board.kernels_for(engine)

    def table(own: dict, slot: int, digits: int) -> dict:
        return {**own.get(base, {}), **{op: round(fit[slot], digits) for op, fit in fitted.items()}}
    return replace(board, calibrated_engine=engine, latency_source=source,
                   cycles_per_mac={**board.cycles_per_mac, CALIBRATED: table(board.cycles_per_mac, 0, 4)},
                   cycles_per_output={**board.cycles_per_output, CALIBRATED: table(board.cycles_per_output, 1, 3)},
                   cycles_per_op={**board.cycles_per_op, CALIBRATED: table(board.cycles_per_op, 2, 1)})


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(table: dict, prefix: str = "") -> str:
    """A profile as TOML: scalars and lists first, then each sub-table under its dotted name."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in table.items() if not isinstance(value, dict)]
    text = "\n".join(lines) + ("\n" if lines else "")
    for key, value in table.items():
        if isinstance(value, dict):
            name = f"{prefix}{json.dumps(key) if not key.replace('-', '').replace('_', '').isalnum() else key}"
            text += f"\n[{name}]\n" + to_toml(value, name + ".")
    return text


def _profile_table(board: Board, raw: dict) -> dict:
    latency = dict(raw["latency"])
    latency.update({"kernels": board.kernels, "calibrated_engine": board.calibrated_engine,
                    "source": board.latency_source,
                    "cycles_per_mac": board.cycles_per_mac, "cycles_per_output": board.cycles_per_output,
                    "cycles_per_op": board.cycles_per_op})
    return {**raw, "latency": latency}


def calibrate(results_paths: list[str | Path], board: Board, out: str | Path, force: bool = False) -> Calibration:
    """Fit the board's per-operator costs on profiled bench runs and write OUT/NAME.toml.

    Args:
        force: write over an OUT/NAME.toml that tinydeploy did not write (a hand-written profile).

    Raises:
        BadInput: a results file is missing, unreadable, not valid bench results, without a
            profile, or from another board; or OUT/NAME.toml is a file of the user's.
    """
    import tomllib
    if not results_paths:
        raise BadInput("give at least one results.json from `tinydeploy bench --profile`")
    from tinydeploy.device.verify import load_results
    layers = []
    for path in results_paths:
        file = Path(path) / "results.json" if Path(path).is_dir() else Path(path)
        layers += _measured_layers(load_results(file), str(file), board)
    engines = sorted({layer["engine"] for layer in layers})
    if len(engines) > 1:
        raise BadInput(f"the runs come from firmware of different engines ({', '.join(engines)}); their kernels "
                       "cost differently, so calibrate one engine at a time")
    engine = engines[0]
    kinds = sorted({layer["op"] for layer in layers})
    fitted, uncalibrated = {}, {}
    for op in kinds:
        result = _fit([layer for layer in layers if layer["op"] == op])
        if isinstance(result, str):
            uncalibrated[op] = result
        else:
            fitted[op] = result
    runs = sorted({layer["run"] for layer in layers})
    new = calibrated_board(board, fitted, f"tinydeploy calibrate: least squares on {len(layers)} layers of "
                                          f"{len(runs)} profiled {engine} run(s) ({', '.join(runs)}); "
                                          f"before: {board.latency_source}", engine)
    raw = tomllib.loads(Path(board.path).read_text(encoding="utf-8"))
    with run_folder(out, [f"{board.name}.toml"], force) as folder:
        target = folder / f"{board.name}.toml"
        write_atomically(target, f"# Board profile calibrated by tinydeploy calibrate from {board.path}\n"
                                 + to_toml(_profile_table(new, raw)))
        written = parse_board(target.read_text(encoding="utf-8"), str(target))  # it reads back as it will be used
    return Calibration(written, target,
                       {op: {"per_unit": round(a, 4), "per_output": round(c, 3), "fixed": round(b, 1), "how": how,
                             "layers": sum(layer["op"] == op for layer in layers)}
                        for op, (a, c, b, how) in fitted.items()},
                       uncalibrated, _errors(board, [dict(layer) for layer in layers], engine),
                       _errors(written, [dict(layer) for layer in layers], engine))
