"""What a model costs on a board with an engine: arena, flash and latency, each with its basis.

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
from tinydeploy.core.model import Model
from tinydeploy.core.names import TFLM

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


class Arena(NamedTuple):
    arena_bytes: int | None
    basis: str
    parts: arena_model.BoardArena | None = None  # TFLM: head, tail and kernel scratch


class Latency(NamedTuple):
    ms: float
    basis: str


def arena_size(need: int, margin_percent: float) -> int:
    """The firmware's arena: what the board needs plus the margin, rounded up to 16 bytes."""
    return int(math.ceil(need * (1 + margin_percent / 100) / 16) * 16)


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


def tflm_flash(model: Model) -> int:
    """Flash bytes of the model as TFLM firmware holds it: the flatbuffer."""
    return model.size_bytes


def tflm_latency(model: Model, board: "Board", engine: str = TFLM) -> Latency:
    """The board's estimate for every operator of the model, from its latency table for the engine."""
    ms = counts.latency_estimate_ms(model, board, board.kernels_for(engine))
    return Latency(round(ms, 4), f"estimate ({board.name}, {board.estimate_basis(engine)})")


def tflm(model: Model, measured: Measurement | None, board: "Board", framework: str | None = None,
         engine: str = TFLM) -> Figures:
    """A model's TFLM figures on a board (tflm_arena, tflm_flash, tflm_latency)."""
    arena = tflm_arena(model, measured, board, framework)
    latency = tflm_latency(model, board, engine)
    return Figures(arena.arena_bytes, tflm_flash(model), latency.ms, latency.basis, arena.basis, arena.parts)


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
    kept = {call.op.index for call in lowered.calls}
    ms = counts.latency_estimate_ms(lowered.model, source, source.kernels_for(engine), kept, board.cpu_mhz)
    return Latency(round(ms, 4), f"estimate from the per-operator cycles of {source.name} "
                                 f"({source.estimate_basis(engine)}), at {board.cpu_mhz:g} MHz ({why_fitted})")


def c(lowered: Lowered, board: "Board", engine: str, instructions: int | None = None,
      fitted: "Board | None" = None, why_fitted: str = "") -> Figures:
    """A model's C-engine figures on a board (c_arena, c_flash, c_latency)."""
    arena = c_arena(lowered)
    latency = c_latency(lowered, board, engine, instructions, fitted, why_fitted)
    return Figures(arena.arena_bytes, c_flash(lowered), latency.ms, latency.basis, arena.basis)
