"""Energy estimates: what one inference costs, and the average power of a duty cycle.

An ESP32 cannot compute at 1 mW, so a power budget is an average: the board wakes, runs one
inference, and sleeps until the next. Each cycle of period T = 1/rate costs

    E = P_active * t_inference + E_wake + P_rest * (T - t_inference - t_wake)

where the board rests awake (no wake), in light sleep or in deep sleep (a reboot). Average
power is E / T, a straight line in the rate: P(f) = P_rest + f * (E_busy - P_rest * t_busy),
with E_busy = P_active * t_inference + E_wake and t_busy = t_inference + t_wake. A rate whose
period is shorter than t_busy is impossible in that mode.

Everything here is an estimate from the board profile's [power] figures (tinydeploy.core.boards),
labelled so; tinydeploy.device.power measures the same quantities with an instrument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tinydeploy.core.boards import Board, PowerProfile
from tinydeploy.core.errors import BadInput
from tinydeploy.core.targets import TUTORIAL_MAX_POWER_MW

ESTIMATE = "estimate"
# How the board rests between inferences: name -> (resting current, wake time, wake current) figures.
SLEEP_MODES = {
    "awake": ("idle_ma", None, None),
    "light": ("light_sleep_ma", "light_wake_ms", "light_wake_ma"),
    "deep": ("deep_sleep_ma", "deep_wake_ms", "deep_wake_ma"),
}
MODE_NAMES = {"awake": "awake idle", "light": "light sleep", "deep": "deep sleep"}
TARGET_MW = TUTORIAL_MAX_POWER_MW  # the tutorial's fourth target
BISECTION_STEPS = 200  # halvings of the rate interval; far below float resolution long before


def unavailable(board: Board) -> str:
    """What an energy estimate says on a board whose profile has no [power] table."""
    return f"estimate unavailable: board {board.name} has no power profile ([power] in {board.path})"


def _profile(board: Board) -> PowerProfile:
    if board.power is None:
        raise BadInput(unavailable(board))
    return board.power


def _positive(name: str, value: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadInput(f"{name} is {value!r}{unit}; it must be a finite number above 0")
    return float(value)


@dataclass(frozen=True)
class InferenceEnergy:
    """The energy of one inference: active power times latency."""

    board: str
    latency_ms: float
    active_mw: float
    energy_uj: float
    figures: dict
    basis: str = ESTIMATE

    def to_dict(self) -> dict:
        return {"board": self.board, "latency_ms": self.latency_ms, "active_mw": self.active_mw,
                "energy_uj": self.energy_uj, "basis": self.basis, "figures": dict(self.figures)}


def inference_energy(board: Board, latency_ms: float) -> InferenceEnergy:
    """Estimated energy of one inference (µJ): supply_v * active_ma * latency.

    Args:
        board: a board whose profile has a [power] table.
        latency_ms: the inference's latency (tinydeploy.costs.counts.latency_estimate_ms, or measured).

    Raises:
        BadInput: no power profile, or latency_ms not a finite number above 0.
    """
    power = _profile(board)
    latency_ms = _positive("latency_ms", latency_ms, " ms")
    active_mw = power.supply_v * power.active_ma
    return InferenceEnergy(board.name, latency_ms, active_mw, active_mw * latency_ms,  # mW * ms = µJ
                           {"supply_v": power.supply_v, "active_ma": power.active_ma})


@dataclass(frozen=True)
class ModePower:
    """Average power at one rate with the board resting in one mode between inferences."""

    mode: str
    rate_hz: float
    possible: bool
    average_mw: float | None  # None where the mode cannot keep the rate
    busy_ms: float  # inference + wake
    cycle_energy_uj: float | None
    reason: str = ""  # why the mode cannot keep the rate

    def to_dict(self) -> dict:
        return {"mode": self.mode, "name": MODE_NAMES[self.mode], "rate_hz": self.rate_hz, "possible": self.possible,
                "average_mw": self.average_mw, "busy_ms": self.busy_ms, "cycle_energy_uj": self.cycle_energy_uj,
                "reason": self.reason}


@dataclass(frozen=True)
class DutyCycle:
    """Average power at one inference rate for every sleep mode, and the mode that minimises it."""

    board: str
    rate_hz: float
    latency_ms: float
    modes: tuple[ModePower, ...]
    best: str | None  # the possible mode of least average power; None if none can keep the rate
    figures: dict
    basis: str = ESTIMATE

    def mode(self, name: str) -> ModePower:
        return next(m for m in self.modes if m.mode == name)

    def to_dict(self) -> dict:
        return {"board": self.board, "rate_hz": self.rate_hz, "latency_ms": self.latency_ms, "best": self.best,
                "modes": [m.to_dict() for m in self.modes], "basis": self.basis, "figures": dict(self.figures)}


def _cycle_terms(power: PowerProfile, latency_ms: float, mode: str) -> tuple[float, float, float]:
    """(resting power mW, busy time ms, busy energy µJ) of one cycle in a mode."""
    rest_name, wake_ms_name, wake_ma_name = SLEEP_MODES[mode]
    wake_ms = getattr(power, wake_ms_name) if wake_ms_name else 0.0
    wake_mw = power.supply_v * getattr(power, wake_ma_name) if wake_ma_name else 0.0
    busy_uj = power.supply_v * power.active_ma * latency_ms + wake_mw * wake_ms
    return power.supply_v * getattr(power, rest_name), latency_ms + wake_ms, busy_uj


def _mode_power(power: PowerProfile, latency_ms: float, rate_hz: float, mode: str) -> ModePower:
    rest_mw, busy_ms, busy_uj = _cycle_terms(power, latency_ms, mode)
    period_ms = 1000.0 / rate_hz
    if period_ms < busy_ms * (1 - 1e-12):  # (a rate of exactly 1/busy, rounded, is still possible)
        return ModePower(mode, rate_hz, False, None, busy_ms, None,
                         f"{MODE_NAMES[mode]} impossible at {rate_hz:g} Hz: the period ({period_ms:.4g} ms) is "
                         f"shorter than inference + wake ({busy_ms:.4g} ms); at most {1000.0 / busy_ms:.4g} Hz")
    cycle_uj = busy_uj + rest_mw * max(period_ms - busy_ms, 0.0)
    return ModePower(mode, rate_hz, True, cycle_uj / period_ms, busy_ms, cycle_uj)


def average_power(board: Board, latency_ms: float, rate_hz: float) -> DutyCycle:
    """Estimated average power at an inference rate, for each way of resting between inferences.

    Args:
        board: a board whose profile has a [power] table.
        latency_ms: one inference's latency.
        rate_hz: inferences per second.

    Returns:
        A DutyCycle: each mode's average mW (or why it cannot keep the rate) and the best mode.

    Raises:
        BadInput: no power profile, or latency_ms / rate_hz not a finite number above 0.
    """
    power = _profile(board)
    latency_ms = _positive("latency_ms", latency_ms, " ms")
    rate_hz = _positive("rate_hz", rate_hz, " Hz")
    modes = tuple(_mode_power(power, latency_ms, rate_hz, mode) for mode in SLEEP_MODES)
    possible = [m for m in modes if m.possible]
    best = min(possible, key=lambda m: m.average_mw).mode if possible else None
    return DutyCycle(board.name, rate_hz, latency_ms, modes, best, power.figures())


@dataclass(frozen=True)
class ModeRate:
    """The highest inference rate one mode keeps within a power budget."""

    mode: str
    max_rate_hz: float  # 0 when even resting exceeds the budget
    limited_by: str  # "budget", "back-to-back" (the rate 1/busy already fits) or "resting power"
    average_mw: float  # at max_rate_hz (the resting power where it is 0)

    def to_dict(self) -> dict:
        return {"mode": self.mode, "name": MODE_NAMES[self.mode], "max_rate_hz": self.max_rate_hz,
                "limited_by": self.limited_by, "average_mw": self.average_mw}


@dataclass(frozen=True)
class RateBudget:
    """The highest inference rate within a power budget, per mode and overall."""

    board: str
    budget_mw: float
    latency_ms: float
    modes: tuple[ModeRate, ...]
    best: str | None  # the mode that allows the highest rate; None if no mode fits the budget at all
    max_rate_hz: float
    method: str
    figures: dict
    basis: str = ESTIMATE

    def mode(self, name: str) -> ModeRate:
        return next(m for m in self.modes if m.mode == name)

    def to_dict(self) -> dict:
        return {"board": self.board, "budget_mw": self.budget_mw, "latency_ms": self.latency_ms, "best": self.best,
                "max_rate_hz": self.max_rate_hz, "method": self.method, "modes": [m.to_dict() for m in self.modes],
                "basis": self.basis, "figures": dict(self.figures)}


def _closed_form(rest_mw: float, busy_ms: float, busy_uj: float, budget_mw: float) -> float:
    # P(f) = rest + f * (busy_uj - rest * busy_ms) / 1000, f in Hz, energies in µJ, times in ms
    slope = (busy_uj - rest_mw * busy_ms) / 1000.0  # mW per Hz
    return (budget_mw - rest_mw) / slope if slope > 0 else math.inf


def _bisection(power: PowerProfile, latency_ms: float, mode: str, budget_mw: float, ceiling_hz: float) -> float:
    low, high = 0.0, ceiling_hz
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if _mode_power(power, latency_ms, middle, mode).average_mw <= budget_mw:
            low = middle
        else:
            high = middle
    return low


METHODS = ("closed-form", "bisection")


def max_rate(board: Board, latency_ms: float, budget_mw: float = TARGET_MW, method: str = "closed-form") -> RateBudget:
    """The highest inference rate that keeps the average power within a budget, per sleep mode.

    Args:
        board: a board whose profile has a [power] table.
        latency_ms: one inference's latency.
        budget_mw: the average-power budget (the tutorial's target is 1 mW).
        method: "closed-form" (average power is linear in the rate) or "bisection" (searches the
            rate on average_power itself; the two agree, which the tests check).

    Returns:
        A RateBudget: each mode's highest rate and what limits it, and the best mode.

    Raises:
        BadInput: no power profile, a value not a finite number above 0, or an unknown method.
    """
    power = _profile(board)
    latency_ms = _positive("latency_ms", latency_ms, " ms")
    budget_mw = _positive("budget_mw", budget_mw, " mW")
    if method not in METHODS:
        raise BadInput(f"method {method!r} is unknown; accepted: {', '.join(METHODS)}")
    rates = []
    for mode in SLEEP_MODES:
        rest_mw, busy_ms, busy_uj = _cycle_terms(power, latency_ms, mode)
        ceiling_hz = 1000.0 / busy_ms  # back to back: no time left to rest
        if rest_mw > budget_mw:
            rates.append(ModeRate(mode, 0.0, "resting power", rest_mw))
            continue
        at_ceiling = _mode_power(power, latency_ms, ceiling_hz, mode).average_mw
        if at_ceiling <= budget_mw:
            rates.append(ModeRate(mode, ceiling_hz, "back-to-back", at_ceiling))
            continue
        rate = (_closed_form(rest_mw, busy_ms, busy_uj, budget_mw) if method == "closed-form"
                else _bisection(power, latency_ms, mode, budget_mw, ceiling_hz))
        rates.append(ModeRate(mode, rate, "budget", _mode_power(power, latency_ms, rate, mode).average_mw
                              if rate > 0 else rest_mw))
    top = max(rates, key=lambda r: r.max_rate_hz)
    best = top.mode if top.max_rate_hz > 0 else None
    return RateBudget(board.name, budget_mw, latency_ms, tuple(rates), best, top.max_rate_hz, method,
                      power.figures())


@dataclass(frozen=True)
class EnergyReport:
    """Everything the energy target needs for one model on one board, or why it is unavailable."""

    board: str
    available: bool
    reason: str = ""
    inference: InferenceEnergy | None = None
    rates: tuple[DutyCycle, ...] = ()
    budget: RateBudget | None = None
    source: str = ""
    basis: str = ESTIMATE

    def to_dict(self) -> dict:
        return {"board": self.board, "available": self.available, "reason": self.reason, "basis": self.basis,
                "inference": self.inference.to_dict() if self.inference else None,
                "rates": [r.to_dict() for r in self.rates],
                "budget": self.budget.to_dict() if self.budget else None, "source": self.source}


def energy_report(board: Board, latency_ms: float, rates_hz: tuple[float, ...] = (0.1, 1.0, 10.0),
                  budget_mw: float = TARGET_MW) -> EnergyReport:
    """The energy of one inference, average power at some rates, and the highest rate within a budget.

    A board without a [power] table gives a report with available=False and the reason
    ("estimate unavailable: board X has no power profile"), not an error.

    Raises:
        BadInput: a value not a finite number above 0.
    """
    if board.power is None:
        return EnergyReport(board.name, False, unavailable(board))
    return EnergyReport(board.name, True, inference=inference_energy(board, latency_ms),
                        rates=tuple(average_power(board, latency_ms, rate) for rate in rates_hz),
                        budget=max_rate(board, latency_ms, budget_mw), source=board.power.source)


def plot_power_vs_rate(cases: list[tuple[Board, float]], path: str | Path, budget_mw: float = TARGET_MW,
                       rates_hz: tuple[float, float] = (0.01, 100.0)) -> Path:
    """Draw average power against inference rate, one panel per board, one line per sleep mode.

    Args:
        cases: (board, latency_ms) pairs; boards without a [power] table are left out.
        path: the PNG to write.
        budget_mw: drawn as a horizontal line.
        rates_hz: the rate axis's range (log scale).

    Returns:
        The path written.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cases = [(b, lat) for b, lat in cases if b.power is not None]
    if not cases:
        raise BadInput("nothing to plot: none of the boards has a power profile")
    figure, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), sharey=True, squeeze=False)
    rates = np.logspace(math.log10(rates_hz[0]), math.log10(rates_hz[1]), 200)
    styles = {"awake": ("tab:red", "-"), "light": ("tab:blue", "--"), "deep": ("tab:green", "-.")}
    for ax, (board, latency_ms) in zip(axes[0], cases):
        for mode in SLEEP_MODES:
            points = [_mode_power(board.power, latency_ms, float(r), mode) for r in rates]
            xs = [p.rate_hz for p in points if p.possible]
            ys = [p.average_mw for p in points if p.possible]
            color, line = styles[mode]
            ax.plot(xs, ys, color=color, linestyle=line, label=MODE_NAMES[mode])
        ax.axhline(budget_mw, color="black", linewidth=0.8)
        ax.text(rates[0], budget_mw * 1.15, f"{budget_mw:g} mW", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{board.name}\n{latency_ms:.3g} ms per inference (estimate)", fontsize=9)
        ax.set_xlabel("inferences per second (Hz)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].set_ylabel("average power (mW, estimate)")
    axes[0][0].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
