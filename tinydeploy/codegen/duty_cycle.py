"""The duty-cycled firmware (`render --duty-cycle-hz R [--sleep MODE]`): classify, then sleep
until the next period, marking each inference on the board's marker GPIO.

Its main is firmware/td_duty.c, in place of the protocol main td_main.c (which stays the
benchmark's); the platform layer (firmware/td_hal.h) gives it the marker pin and sleep. What is
rendered is one header, src/td_duty_config.h: the period, the sleep mode and the marker pin.
The sleep mode defaults to the one that minimises the average power at the rate
(tinydeploy.costs.energy.average_power), from the engine's latency estimate and the board's
[power] figures, which a duty cycle therefore needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinydeploy.codegen.templating import copied_firmware
from tinydeploy.core.boards import Board, get_board
from tinydeploy.core.bounds import check
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import Model
from tinydeploy.costs import energy

MAIN = "td_main.c"  # the protocol main, for bench and verify
DUTY_MAIN = "td_duty.c"  # the duty-cycled main
CONFIG = "src/td_duty_config.h"
SLEEP_MACROS = {"awake": "TD_SLEEP_AWAKE", "light": "TD_SLEEP_LIGHT", "deep": "TD_SLEEP_DEEP"}  # td_hal.h
# The C engine's latency off the emulated board comes from instruction counts fitted there.
FITTED_BOARD = "qemu-riscv32"


@dataclass(frozen=True)
class DutyPlan:
    """What the duty-cycled firmware does: its rate, period, sleep mode (and why), marker pin,
    and the estimate it was chosen on."""
    rate_hz: float
    period_us: int
    sleep: str
    chosen_by: str  # "asked" (--sleep) or "estimate" (least average power)
    marker_gpio: int | None
    latency_ms: float
    latency_basis: str
    average_mw: float
    modes: dict  # mode -> its average mW at the rate, or why it can't keep it

    def to_dict(self) -> dict:
        return {"rate_hz": self.rate_hz, "period_us": self.period_us, "sleep": self.sleep,
                "chosen_by": self.chosen_by, "marker_gpio": self.marker_gpio, "latency_ms": self.latency_ms,
                "latency_basis": self.latency_basis, "average_mw": self.average_mw, "modes": self.modes,
                "basis": energy.ESTIMATE}

    def values(self) -> dict:
        """The template's values (templates/common/td_duty_config.h.j2)."""
        why = ("asked for (--sleep)" if self.chosen_by == "asked" else
               "the mode of least average power at this rate, estimated")
        sleep_note = (f"Between inferences: {energy.MODE_NAMES[self.sleep]}, {why}: {self.average_mw:.4g} mW on "
                      f"average (estimate from a {self.latency_ms:g} ms inference and the board's [power] figures). "
                      + "; ".join(f"{energy.MODE_NAMES[m]}: {v}" for m, v in self.modes.items()) + ".")
        marker_note = (f"Raised while each inference runs: GPIO {self.marker_gpio}, the board profile's "
                       "[power] marker_gpio (a wiring choice: wire it to the power monitor's logic input)"
                       if self.marker_gpio is not None else
                       "No marker pin: the board profile's [power] table names no marker_gpio")
        return {"rate_hz": f"{self.rate_hz:g}", "period_us": self.period_us, "sleep": self.sleep,
                "sleep_macro": SLEEP_MACROS[self.sleep], "sleep_note": sleep_note.replace("*/", "* /"),
                "marker_gpio": -1 if self.marker_gpio is None else self.marker_gpio, "marker_note": marker_note}


def plan(model: Model, board: Board, engine, measured, rate_hz: float, sleep: str | None = None) -> DutyPlan:
    """The duty cycle for a model on a board with an engine.

    Args:
        model, board: what is rendered.
        engine: the engine (tinydeploy.codegen.engines), whose latency estimate times the inference.
        measured: the host's TFLM arena measurement (the TFLM engine's cost needs it; None measures it).
        rate_hz: inferences per second.
        sleep: "awake", "light" or "deep"; None: the one of least average power at the rate.

    Raises:
        BadInput: a rate or mode out of bounds, a board without [power] figures, or a rate that
            the mode (or, with none asked, every mode) cannot keep.
    """
    check("--duty-cycle-hz", rate_hz)
    if sleep is not None:
        check("--sleep", sleep)
    if board.power is None:
        raise BadInput(f"--duty-cycle-hz: {energy.unavailable(board)}; the sleep mode and the marker pin come "
                       "from it")
    cost = engine.cost(model, board, measured=measured, fitted=get_board(FITTED_BOARD),
                       why_fitted="no emulator run at render")
    duty = energy.average_power(board, cost.latency_ms, rate_hz)
    modes = {m.mode: (f"{m.average_mw:.4g} mW" if m.possible else m.reason) for m in duty.modes}
    if sleep is None:
        if duty.best is None:
            raise BadInput(f"--duty-cycle-hz {rate_hz:g}: no sleep mode keeps it on {board.name}: one inference "
                           f"takes {cost.latency_ms:g} ms (estimate), so at most {1000 / cost.latency_ms:.4g} Hz")
        chosen, chosen_by = duty.best, "estimate"
    else:
        if not duty.mode(sleep).possible:
            raise BadInput(f"--duty-cycle-hz {rate_hz:g} --sleep {sleep}: {duty.mode(sleep).reason}")
        chosen, chosen_by = sleep, "asked"
    return DutyPlan(rate_hz, max(1, round(1e6 / rate_hz)), chosen, chosen_by, board.power.marker_gpio,
                    cost.latency_ms, cost.latency_basis, duty.mode(chosen).average_mw, modes)


def files(duty: DutyPlan, env, banner: str) -> dict[str, str]:
    """The duty-cycled project's own files: its settings header and its main."""
    return {CONFIG: env.get_template("common/td_duty_config.h.j2").render(banner=banner, **duty.values()),
            **copied_firmware((DUTY_MAIN,))}


def describe(duty: DutyPlan) -> str:
    """What render says of a duty-cycled project, after the engine's description."""
    marker = f"GPIO {duty.marker_gpio}" if duty.marker_gpio is not None else "none"
    return (f"; duty-cycled (src/{DUTY_MAIN}, no serial protocol): one inference every {duty.period_us:,} µs, "
            f"{energy.MODE_NAMES[duty.sleep]} between ({'asked' if duty.chosen_by == 'asked' else 'least power'}: "
            f"{duty.average_mw:.4g} mW on average, estimate), inference marker {marker}")
