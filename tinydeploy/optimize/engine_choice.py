"""Which engine should run a model on a board: each engine's costs there (tinydeploy.codegen.engines
costs a model; here they are judged against the targets), and the choice:
- ``tflm``: the TFLite Micro interpreter. Arena: the measured TFLM arena with the board's
  kernel scratch at 32-bit sizes (tinydeploy.costs.arena); flash: the flatbuffer; latency: the
  board's estimate.
- ``c``: tinydeploy's C engine. Arena: its static plan; flash: its constant arrays; latency:
  on a board whose instruction set tinydeploy emulates (``isa = "rv32imc"``: the ESP32-C3),
  the instructions retired by the generated C running under QEMU, cached per model, at the
  board's clock. Where QEMU or the cross compiler is missing, or the board's CPU is another,
  per-operator instruction counts (per MAC, per output, per layer) fitted on earlier emulator
  runs (the qemu-riscv32 profile), labelled as such.

Energy, for either engine: the energy of one inference and the average power at the targets'
rate with the best sleep mode, estimated from that engine's latency and the board's [power]
table (tinydeploy.costs.figures.energy); judged when --max-energy-uj or --max-power-mw is set.
A faster engine costs less energy per inference, so the energy targets choose between engines
as the latency target does.

Both engines run the same int8 model with the same results on the host (the C engine is
bit-exact with TFLite's reference kernels, as TFLM is), so accuracy does not separate them:
the choice is the engine that meets every target, the board's preferred one (first listed)
when both do, and otherwise the one that misses fewest targets.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tinydeploy.runtime import tflm
from tinydeploy.core.boards import Board, get_board
from tinydeploy.core.errors import BadInput, StepFailed, TinyDeployError
from tinydeploy.codegen.engines import ENGINES
from tinydeploy.costs import figures as cost_figures
from tinydeploy.core.model import Model
from tinydeploy.core.names import C
from tinydeploy.core.targets import TargetResult, Targets, check

EMULATED_BOARD = "qemu-riscv32"  # the profile whose firmware runs under QEMU and counts instructions


@dataclass
class EngineCost:
    engine: str
    arena_bytes: int | None = None
    flash_bytes: int | None = None
    latency_ms: float | None = None
    latency_basis: str = ""
    verdicts: list[TargetResult] = field(default_factory=list)
    unavailable: str | None = None  # why this engine can't run the model at all
    energy: dict | None = None  # tinydeploy.costs.figures.Energy.to_dict() at the targets' rate and budget
    board: Board | None = field(default=None, repr=False, compare=False)  # to estimate energy again (scaled)

    @property
    def met(self) -> bool:
        return self.unavailable is None and all(v.met for v in self.verdicts)

    @property
    def misses(self) -> int:
        return len(self.verdicts) + 1 if self.unavailable else sum(not v.met for v in self.verdicts)

    def scaled(self, flash: float, latency: float, targets: Targets) -> "EngineCost":
        """These costs with flash and latency scaled (from an untrained model to what training
        gave its twin), judged again."""
        if self.unavailable:
            return self
        return _judged(EngineCost(self.engine, self.arena_bytes, int(round(self.flash_bytes * flash)),
                                  round(self.latency_ms * latency, 4), self.latency_basis, board=self.board),
                       targets, "untrained model")

    def to_dict(self) -> dict:
        return {"engine": self.engine, "arena_bytes": self.arena_bytes, "flash_bytes": self.flash_bytes,
                "latency_ms": self.latency_ms, "latency_basis": self.latency_basis, "met": self.met,
                "targets": [v.to_dict() for v in self.verdicts], "unavailable": self.unavailable,
                "energy": self.energy}

    @classmethod
    def from_dict(cls, raw: dict) -> "EngineCost":
        """The costs of a dict from to_dict (a stage's metrics.json)."""
        return cls(raw["engine"], raw["arena_bytes"], raw["flash_bytes"], raw["latency_ms"], raw["latency_basis"],
                   [TargetResult.from_dict(v) for v in raw["targets"]], raw["unavailable"], raw.get("energy"))


def _judged(cost: EngineCost, targets: Targets, arena_basis: str) -> EngineCost:
    """Judge the costs against the targets; with a board, energy is estimated from the latency
    (at the targets' rate and power budget) and judged where an energy target is set."""
    energy = None
    if cost.board is not None and cost.latency_ms is not None:
        energy = cost_figures.energy(cost.board, cost.latency_ms, cost.latency_basis, targets.rate_hz,
                                     targets.power_budget_mw)
        cost.energy = energy.to_dict()
    cost.verdicts = check(targets, arena_bytes=cost.arena_bytes, model_bytes=cost.flash_bytes,
                          latency_ms=cost.latency_ms, arena_basis=arena_basis, latency_basis=cost.latency_basis,
                          energy=energy if targets.judges_energy else None)
    return cost


def _cost(engine, model: Model, board: Board, targets: Targets, measured: tflm.ArenaMeasurement | None,
          emulate_in: Path | None) -> EngineCost:
    instructions, why_fitted = None, ""
    if engine.emulated:
        if board.isa == "rv32imc" and emulate_in is not None:
            try:
                instructions = emulated_instructions(model, emulate_in)
            except TinyDeployError as exc:  # the fitted estimate stands in, saying why
                why_fitted = f"the emulator run failed: {exc}"
        why_fitted = why_fitted or (f"{board.chip} is not emulated" if board.isa != "rv32imc" else
                                    "QEMU or the RV32 cross compiler is missing" if emulate_in is not None else
                                    "no emulator run asked for")
    try:
        figures = engine.cost(model, board, measured=measured, instructions=instructions,
                              fitted=get_board(EMULATED_BOARD), why_fitted=why_fitted)
    except BadInput as exc:
        return EngineCost(engine.name, unavailable=str(exc))
    cost = EngineCost(engine.name, figures.arena_bytes, figures.flash_bytes, figures.latency_ms,
                      figures.latency_basis, board=board)
    return _judged(cost, targets, figures.arena_basis)


def cost_all(model: Model, board: Board, targets: Targets, measured: tflm.ArenaMeasurement | None = None,
             emulate_in: Path | None = None) -> list[EngineCost]:
    """The model's cost on every engine the board lists, in the board's order of preference.
    emulate_in: a cache folder for emulator runs, on a board whose CPU tinydeploy emulates."""
    return [_cost(ENGINES[name], model, board, targets, measured, emulate_in) for name in board.engines]


def choose(options: list[EngineCost]) -> tuple[EngineCost, str]:
    """The engine to use, and why, in words."""
    best = min(options, key=lambda c: (not c.met, c.misses, options.index(c)))
    others = [c for c in options if c is not best]

    def figures(c: EngineCost) -> str:
        if c.unavailable:
            return f"{c.engine} can't run it ({c.unavailable})"
        missed = [v.describe() for v in c.verdicts if not v.met]
        return f"{c.engine} " + (f"misses {'; '.join(missed)}" if missed else
                                 f"meets every target ({c.latency_ms:g} ms, {c.arena_bytes:,} B arena)")

    if not others:
        why = f"the board runs only the {best.engine} engine: {figures(best)}"
    elif best.met and all(c.met for c in others):
        why = f"every engine meets the targets; {best.engine} is the board's first choice"
    else:
        why = "; ".join(figures(c) for c in [best, *others])
    return best, why


def emulated_instructions(model: Model, cache: Path) -> int | None:
    """Instructions retired by one inference of the model's C engine firmware on the emulated
    RV32IMC board (median of three), cached in cache/ by the model's SHA-256, the firmware
    built in cache/rv32-firmware. None when the cross compiler or QEMU is missing.

    Raises:
        TinyDeployError: the render, build or emulator run failed.
    """
    board = get_board(EMULATED_BOARD)
    tools = [board.toolchain["cc"], board.emulator["command"][0]]
    cached = Path(cache) / f"{model.sha256}.json"
    if cached.is_file():
        try:
            return int(json.loads(cached.read_text())["instructions"])
        except (ValueError, KeyError, TypeError):
            pass
    if any(shutil.which(tool) is None for tool in tools):
        return None
    from tinydeploy.device import emulate
    from tinydeploy.device.bench import bench
    from tinydeploy.toolchain.build import build
    from tinydeploy.core.outputs import locked, write_atomically
    from tinydeploy.toolchain.project import write_project
    from tinydeploy.codegen.render import RenderOptions, render
    # One project folder in the cache, rendered over for each model: make recompiles only the
    # files that changed (the model's), not the kernels every model shares. The cache's lock
    # keeps another run from rendering over it between this one's build and its emulator run.
    Path(cache).mkdir(parents=True, exist_ok=True)
    with locked(Path(cache), "--out"):  # cache is --out/engines
        work = Path(cache) / "rv32-firmware"
        write_project(render(model, board, None, RenderOptions(engine=C)), work)
        try:
            build(work)
        except StepFailed:  # perhaps an object a killed run left half written: once more from clean
            shutil.rmtree(work / "build", ignore_errors=True)
            build(work)
        with emulate.start(work) as emulator:
            result = bench(emulator.url, work / "bench", runs=3, warmup=1, reset=False)
    instructions = int(result.latency_instructions["median"])
    write_atomically(cached, json.dumps({"instructions": instructions, "model_sha256": model.sha256,
                                         "board": EMULATED_BOARD}))
    return instructions
