"""What a model costs on a board with an engine: arena, flash, latency and energy, each with its basis.

Every such figure is computed here and nowhere else: ``inspect`` (tinydeploy.runtime.inspect),
the engine registry's ``cost``, ``arena`` and ``summary`` (tinydeploy.codegen.engines), and
through them search, optimize and render, all call these functions. The formulas underneath
are in this layer too: the board arena in tinydeploy.costs.arena, the static plan in
tinydeploy.costs.memplan, live ranges in tinydeploy.costs.liveness, the cycle-table latency in
tinydeploy.costs.counts.

- TFLM: the arena the board needs, derived from the host's TFLM measurement (the greedy plan
  with the board's kernel scratch, the tail at 32-bit sizes); flash, the flatbuffer; latency,
  the board's cycle table over every operator.
- the C engine: the arena of its static plan; flash, its constant arrays; latency, the
  instructions retired under emulation where they were counted, else a cycle table over the
  operators left after folding.
- a front end (a model whose metadata holds one: tinydeploy.core.model_frontend): the firmware
  runs it before the model, so its RAM (scratch and the received window), flash (tables and
  code) and cycles (tinydeploy.costs.frontend) join either engine's arena, flash and latency,
  and so its energy; an emulator's instruction count includes it already.
- energy, for either engine: the energy of one inference and the average power at an inference
  rate with the sleep mode that minimises it, from the figure's latency and the board's [power]
  table (tinydeploy.costs.energy); or, after `bench --power-monitor`, from the measured energy.

This layer sits below runtime and codegen, so what they make is passed in: the host's TFLM
measurement and the C engine's lowered model, as the protocols below describe them. The engine
names given here only pick a board's latency table (Board.kernels_for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol, Sequence

from tinydeploy.costs import arena as arena_model
from tinydeploy.costs import counts
from tinydeploy.costs import energy as energy_model
from tinydeploy.costs.frontend import FrontendCost, frontend_cost
from tinydeploy.core.boards import override_power
from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model
from tinydeploy.core.model_frontend import device_frontend
from tinydeploy.core.names import TFLM
from tinydeploy.core.targets import DEFAULT_RATE_HZ, TUTORIAL_MAX_POWER_MW

if TYPE_CHECKING:
    from tinydeploy.core.boards import Board



class Measurement(Protocol):
    """The host's TFLM arena (tinydeploy.runtime.tflm.ArenaMeasurement)."""
    arena_bytes: int
    head_bytes: int | None
    tail_bytes: int | None


class Lowered(Protocol):
    """The C engine's lowered model (tinydeploy.codegen.cengine.Lowered)."""
    model: Model
    calls: Sequence  # each call's .op is the operator it runs; folded operators have no call

    @property
    def arena_bytes(self) -> int: ...

    @property
    def weight_bytes(self) -> int: ...


@dataclass
class Figures:
    """An engine's cost of a model on a board, before judging: bytes, ms and how they were had."""
    arena_bytes: int | None  # None: TFLM could not load the model, so nothing was measured
    flash_bytes: int
    latency_ms: float
    latency_basis: str
    arena_basis: str
    board_arena: arena_model.BoardArena | None = None  # TFLM: what the arena is made of
    energy: "Energy | None" = None  # from latency_ms and the board's [power] table (see energy())
    frontend: FrontendCost | None = None  # the model's front end, whose share the figures include


class Arena(NamedTuple):
    arena_bytes: int | None
    basis: str
    parts: arena_model.BoardArena | None = None  # TFLM: head, tail and kernel scratch


class Latency(NamedTuple):
    ms: float
    basis: str


# -- energy -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Energy:
    """The energy of one inference, and the average power at an inference rate with the sleep
    mode that minimises it, each with its basis; the figures missing say why in `reason`."""

    board: str
    rate_hz: float
    budget_mw: float
    energy_uj: float | None = None  # per inference
    average_mw: float | None = None  # at rate_hz, resting in `mode` between inferences
    mode: str | None = None  # tinydeploy.costs.energy.SLEEP_MODES' name; None: no mode keeps the rate
    max_rate_hz: float | None = None  # the highest rate within budget_mw (0: none)
    max_rate_mode: str | None = None
    energy_basis: str = ""
    power_basis: str = ""
    reason: str = ""
    report: energy_model.EnergyReport | None = None  # every mode at the rate, each mode's highest rate

    @property
    def available(self) -> bool:
        return self.energy_uj is not None

    @property
    def mode_name(self) -> str | None:
        return energy_model.MODE_NAMES[self.mode] if self.mode else None

    @property
    def budget_note(self) -> str:
        """The highest rate within the budget, in words ("" where there is no estimate)."""
        if self.max_rate_hz is None:
            return ""
        if self.max_rate_mode is None:
            resting = min(m.average_mw for m in self.report.budget.modes)
            return (f"no rate keeps {self.budget_mw:g} mW: resting alone draws at least {resting:.3g} mW "
                    "in every sleep mode")
        return (f"the highest rate within {self.budget_mw:g} mW is {self.max_rate_hz:.3g} Hz "
                f"({energy_model.MODE_NAMES[self.max_rate_mode]})")

    def to_dict(self) -> dict:
        return {"board": self.board, "available": self.available, "energy_uj": self.energy_uj,
                "energy_basis": self.energy_basis, "rate_hz": self.rate_hz, "average_mw": self.average_mw,
                "mode": self.mode, "mode_name": self.mode_name, "power_basis": self.power_basis,
                "budget_mw": self.budget_mw, "max_rate_hz": self.max_rate_hz, "max_rate_mode": self.max_rate_mode,
                "budget_note": self.budget_note, "reason": self.reason,
                "detail": self.report.to_dict() if self.report else None}


def _duty_cycle(board: "Board", latency_ms: float, rate_hz: float, budget_mw: float, energy_uj: float,
                energy_basis: str, power_basis: str) -> Energy:
    """Energy with the average power at rate_hz and the highest rate within budget_mw, where
    energy_uj is already known (estimated or measured) and latency_ms is the inference's time."""
    report = energy_model.energy_report(board, latency_ms, (rate_hz,), budget_mw)
    duty = report.rates[0]
    average = duty.mode(duty.best).average_mw if duty.best else None
    awake = duty.mode("awake").busy_ms  # resting awake: no wake time, the least busy of the modes
    reason = "" if duty.best else (f"no sleep mode keeps {rate_hz:g} Hz: one inference takes {awake:.4g} ms, so at "
                                   f"most {1000 / awake:.4g} Hz (resting awake, with no wake time)")
    return Energy(board.name, rate_hz, budget_mw, energy_uj, average, duty.best, report.budget.max_rate_hz,
                  report.budget.best, energy_basis, power_basis, reason, report)


def _overridden(board: "Board") -> str:
    figures = board.power.overridden if board.power else ()
    return f"; figures replaced: {', '.join(figures)}" if figures else ""


def energy(board: "Board", latency_ms: float | None, latency_basis: str, rate_hz: float = DEFAULT_RATE_HZ,
           budget_mw: float = TUTORIAL_MAX_POWER_MW) -> Energy:
    """Estimated energy of one inference and average power at a rate, from a latency and the
    board's [power] table (tinydeploy.costs.energy).

    Args:
        board: the board; one without a [power] table gives figures that say so.
        latency_ms: one inference's latency (an estimate or a board's timing); None or 0 where
            there is none, which gives figures that say so.
        latency_basis: how that latency was had, for the figures' basis.
        rate_hz: the inference rate to state the average power at.
        budget_mw: the power budget to state the highest rate within.

    Returns:
        The Energy; where a figure can't be had, None with the reason ("estimate unavailable:
        board X has no power profile ...").

    Raises:
        BadInput: rate_hz or budget_mw out of their bounds (tinydeploy.core.bounds).
    """
    check("--rate-hz", rate_hz)
    check("--max-power-mw", budget_mw)
    if board.power is None:
        return Energy(board.name, rate_hz, budget_mw, reason=energy_model.unavailable(board))
    if latency_ms is None or not latency_ms > 0:
        return Energy(board.name, rate_hz, budget_mw,
                      reason=f"estimate unavailable: no latency above 0 ms to estimate energy from "
                             f"({latency_basis or 'no latency'})")
    inference = energy_model.inference_energy(board, latency_ms)
    profile = f"{board.name} power profile{_overridden(board)}"
    return _duty_cycle(board, latency_ms, rate_hz, budget_mw, inference.energy_uj,
                       f"estimate ({profile}: {inference.active_mw:.4g} mW active × {latency_ms:g} ms, "
                       f"latency {latency_basis})",
                       f"estimate ({profile}, latency {latency_basis})")


def measured_energy(board: "Board | None", power: dict, rate_hz: float = DEFAULT_RATE_HZ,
                    budget_mw: float = TUTORIAL_MAX_POWER_MW) -> Energy:
    """Energy figures from a power monitor's measurement (results.json's "power", written by
    `bench --power-monitor`): the measured energy per inference, and the average power at a rate
    estimated from it, the measured idle current and the board's sleep and wake figures.

    Args:
        board: the board profile, for its sleep and wake figures (None: the average is unavailable).
        power: energy_uj, inference_ms, active_ma, idle_ma, voltage_v, monitor, inferences and
            sample_rate_hz, as tinydeploy.device.power_measure.PowerMeasurement.to_dict() gives them.
        rate_hz, budget_mw: as for energy().

    Raises:
        BadInput: rate_hz or budget_mw out of their bounds.
    """
    check("--rate-hz", rate_hz)
    check("--max-power-mw", budget_mw)
    name = board.name if board else "unknown board"
    measured_uj, inference_ms = power["energy_uj"], power["inference_ms"]
    basis = (f"measured ({power['monitor']}, {power['inferences']} inferences at "
             f"{power['sample_rate_hz'] / 1000:g} kS/s, the marked windows only)")
    if board is None or board.power is None:
        why = ("no board profile to take sleep and wake figures from (give --board)" if board is None
               else energy_model.unavailable(board))
        return Energy(name, rate_hz, budget_mw, measured_uj, energy_basis=basis, reason=f"average power: {why}")
    # The profile's active current replaced so that active power x the marked time is the measured
    # energy, and its awake-idle current by the one measured after the inferences.
    replaced = {"active_ma": measured_uj / inference_ms / board.power.supply_v}
    if power.get("idle_ma") is not None:
        replaced["idle_ma"] = power["idle_ma"]
    try:
        measured_board = override_power(board, replaced)
    except BadInput as exc:
        return Energy(name, rate_hz, budget_mw, measured_uj, energy_basis=basis,
                      reason=f"average power: the measured figures don't fit the {board.name} sleep figures ({exc})")
    return _duty_cycle(measured_board, inference_ms, rate_hz, budget_mw, measured_uj, basis,
                       f"estimate from the measured energy and idle current ({power['monitor']}) with "
                       f"the {board.name} power profile's sleep and wake figures")


def arena_size(need: int, margin_percent: float) -> int:
    """The firmware's arena: what the board needs plus the margin, rounded up to 16 bytes."""
    return int(math.ceil(need * (1 + margin_percent / 100) / 16) * 16)


# -- the front end -------------------------------------------------------------------------

def frontend(model: Model) -> FrontendCost | None:
    """The cost of the front end a model's firmware runs (tinydeploy.costs.frontend), or None
    when the model has none.

    Raises:
        BadInput: the model's metadata holds a front end that does not fit the model.
    """
    found = device_frontend(model)
    return None if found is None else frontend_cost(found.front, found.window)


def frontend_arena(model: Model) -> int:
    """Bytes of RAM a model's front end adds to its arena figure (0 without one): the scratch
    and the int16 window the firmware receives."""
    cost = frontend(model)
    return cost.ram_bytes if cost else 0


def frontend_latency(cost: FrontendCost, board: "Board") -> Latency:
    """One window through the front end on a board: its estimated cycles at the board's clock."""
    return Latency(round(cost.cycles_estimate / board.cpu_mhz / 1000, 4),
                   f"estimate: {cost.operations:,} integer operations x {cost.cycles_estimate / cost.operations:.2g} "
                   f"cycles at {board.cpu_mhz:g} MHz")


def _with_frontend(cost: FrontendCost | None, board: "Board", arena: Arena, flash: int, latency: Latency,
                   counted: bool = False) -> tuple[Arena, int, Latency]:
    """An engine's arena, flash and latency with the front end's share added (counted: the
    latency is an emulator's count of the whole firmware, front end included)."""
    if cost is None:
        return arena, flash, latency
    arena = Arena(None if arena.arena_bytes is None else arena.arena_bytes + cost.ram_bytes,
                  f"{arena.basis} + front end {cost.ram_bytes:,} B (scratch {cost.scratch_bytes:,} B, "
                  f"int16 window {cost.input_bytes:,} B)", arena.parts)
    if counted:
        return arena, flash + cost.flash_bytes_estimate, Latency(latency.ms, f"{latency.basis}, front end included")
    share = frontend_latency(cost, board)
    return arena, flash + cost.flash_bytes_estimate, Latency(round(latency.ms + share.ms, 4),
                                                             f"{latency.basis} + front end {share.ms:g} ms "
                                                             f"({share.basis})")


# -- TFLM ---------------------------------------------------------------------------------

def tflm_arena(model: Model, measured: Measurement | None, board: "Board", framework: str | None = None) -> Arena:
    """The arena a board's TFLM firmware needs for a model.

    Args:
        model: the model.
        measured: the host's TFLM measurement of it; None where TFLM cannot load it.
        board: the board, whose kernel library for the framework asks for its own scratch.
        framework: the firmware framework (default: the board profile's own).

    Returns:
        For an int8 model, TFLM's plan with the board's kernel scratch and the tail at 32-bit
        sizes (tinydeploy.costs.arena.for_board); for another, the host's figure as measured;
        None bytes when nothing was measured.
    """
    if measured is None:
        return Arena(None, "not measured (TFLM cannot load the model)")
    if not model.is_int8:
        return Arena(measured.arena_bytes, "measured (TFLM, host)")
    need = arena_model.for_board(model, measured, board, framework)
    return Arena(need.arena_bytes, f"{board.name}, {need.kernels} kernels, 32-bit (derived)", need)


def tflm_firmware_arena(model: Model, measured: Measurement, board: "Board", framework: str,
                        margin_percent: float) -> tuple[int, arena_model.BoardArena]:
    """(the arena TFLM firmware declares: the board's need plus the margin, what the need is made of)."""
    need = arena_model.for_board(model, measured, board, framework)
    return arena_size(need.arena_bytes, margin_percent), need


def tflm_arena_by_library(model: Model, measured: Measurement) -> dict[str, int]:
    """The arena TFLM firmware needs for an int8 model with each kernel library a board may link
    (tflm_arena's figure, no margin): what a model image records, so that a firmware with any
    of them can tell whether the model fits its arena."""
    from tinydeploy.costs.kernels import LIBRARIES
    return {name: arena_model.board_arena(model, measured, library).arena_bytes for name, library in LIBRARIES.items()}


def tflm_library_firmware_arena(model: Model, measured: Measurement, kernels: str, margin_percent: float) -> int:
    """The arena TFLM firmware declares with a given kernel library (no board: the virtual
    device's firmware, which links the reference kernels): the need plus the margin."""
    from tinydeploy.costs.kernels import library
    return arena_size(arena_model.board_arena(model, measured, library(kernels)).arena_bytes, margin_percent)


def tflm_flash(model: Model) -> int:
    """Flash bytes of the model as TFLM firmware holds it: the flatbuffer."""
    return model.size_bytes


def tflm_latency(model: Model, board: "Board", engine: str = TFLM) -> Latency:
    """The board's estimate for every operator of the model, from its latency table for the engine."""
    ms = counts.latency_estimate_ms(model, board, board.kernels_for(engine))
    return Latency(round(ms, 4), f"estimate ({board.name}, {board.estimate_basis(engine)})")


def tflm(model: Model, measured: Measurement | None, board: "Board", framework: str | None = None,
         engine: str = TFLM, rate_hz: float = DEFAULT_RATE_HZ, budget_mw: float = TUTORIAL_MAX_POWER_MW) -> Figures:
    """A model's TFLM figures on a board (tflm_arena, tflm_flash, tflm_latency, with its front
    end's share where it has one, and energy at rate_hz with the highest rate within budget_mw)."""
    cost = frontend(model)
    arena, flash, latency = _with_frontend(cost, board, tflm_arena(model, measured, board, framework),
                                           tflm_flash(model), tflm_latency(model, board, engine))
    return Figures(arena.arena_bytes, flash, latency.ms, latency.basis, arena.basis, arena.parts,
                   energy(board, latency.ms, latency.basis, rate_hz, budget_mw), cost)


# -- the C engine ---------------------------------------------------------------------------

def c_arena(lowered: Lowered) -> Arena:
    """The C engine's arena: its static plan, exact (its firmware needs no margin)."""
    return Arena(lowered.arena_bytes, "the C engine's static plan")


def c_flash(lowered: Lowered) -> int:
    """Flash bytes of the model as the C engine's firmware holds it: its constant arrays."""
    return lowered.weight_bytes


def c_latency(lowered: Lowered, board: "Board", engine: str, instructions: int | None = None,
              fitted: "Board | None" = None, why_fitted: str = "") -> Latency:
    """The C engine's latency on a board.

    Args:
        lowered: the lowered model.
        board: the board it runs on.
        engine: the engine's name, which picks the boards' latency tables.
        instructions: instructions retired by one inference under emulation, if counted.
        fitted: the board whose per-operator table stands in (cycles fitted on emulator runs),
            unless the board is the emulated one or was calibrated on this engine's runs.
        why_fitted: why there is no emulator count, for the basis.

    Returns:
        From the instructions at one a cycle, else the table's cycles over the operators that
        run (folded shape arithmetic costs nothing), both at the board's clock.
    """
    if instructions is not None:
        return Latency(round(instructions / board.cpu_mhz / 1000, 4),
                       f"estimate from emulated RV32IMC instructions at {board.cpu_mhz:g} MHz "
                       f"({instructions:,} per inference under QEMU, one instruction per cycle)")
    source = board if board.emulated or board.calibrated_engine == engine else fitted
    kept = {call.op.index for call in lowered.members}
    ms = counts.latency_estimate_ms(lowered.model, source, source.kernels_for(engine), kept, board.cpu_mhz)
    return Latency(round(ms, 4), f"estimate from the per-operator cycles of {source.name} "
                                 f"({source.estimate_basis(engine)}), at {board.cpu_mhz:g} MHz ({why_fitted})")


def c(lowered: Lowered, board: "Board", engine: str, instructions: int | None = None,
      fitted: "Board | None" = None, why_fitted: str = "", rate_hz: float = DEFAULT_RATE_HZ,
      budget_mw: float = TUTORIAL_MAX_POWER_MW) -> Figures:
    """A model's C-engine figures on a board (c_arena, c_flash, c_latency, with its front end's
    share where it has one, and energy as for tflm)."""
    cost = frontend(lowered.model)
    arena, flash, latency = _with_frontend(cost, board, c_arena(lowered), c_flash(lowered),
                                           c_latency(lowered, board, engine, instructions, fitted, why_fitted),
                                           counted=instructions is not None)
    return Figures(arena.arena_bytes, flash, latency.ms, latency.basis, arena.basis,
                   energy=energy(board, latency.ms, latency.basis, rate_hz, budget_mw), frontend=cost)
