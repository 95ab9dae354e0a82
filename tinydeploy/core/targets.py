"""Deployment targets (budgets) and checking figures against them.

Shared by inspect, optimize and verify, so every command judges the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tinydeploy.core.bounds import problem
from tinydeploy.core.errors import BadInput, TargetMissed

# The reference targets: a 64 KB tensor arena, a 20 KB model, 1 ms inference, and 1 mW on
# average. The energy targets are judged only when asked (a board may have no power profile);
# the average power and the highest rate within 1 mW are shown either way.
DEFAULT_MAX_ARENA_KB = 64.0
DEFAULT_MAX_MODEL_KB = 20.0
DEFAULT_MAX_LATENCY_MS = 1.0
TUTORIAL_MAX_POWER_MW = 1.0  # the tutorial's fourth target: an average at a duty cycle
DEFAULT_RATE_HZ = 1.0  # the inference rate an average power is stated at, unless one is asked


@dataclass(frozen=True)
class Targets:
    """The budgets. max_energy_uj (per inference) and max_power_mw (the average at rate_hz, with
    the sleep mode that minimises it) are not judged when None."""

    max_arena_kb: float = DEFAULT_MAX_ARENA_KB
    max_model_kb: float = DEFAULT_MAX_MODEL_KB
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS
    max_energy_uj: float | None = None
    max_power_mw: float | None = None
    rate_hz: float = DEFAULT_RATE_HZ

    def __post_init__(self):
        bad = [problem("--" + name.replace("_", "-"), value) for name, value in vars(self).items()
               if value is not None or name not in ("max_energy_uj", "max_power_mw")]
        if any(bad):
            raise BadInput("; ".join(b for b in bad if b))

    @property
    def power_budget_mw(self) -> float:
        """The budget a highest rate is stated against: max_power_mw, or the tutorial's 1 mW."""
        return TUTORIAL_MAX_POWER_MW if self.max_power_mw is None else self.max_power_mw

    @property
    def judges_energy(self) -> bool:
        return self.max_energy_uj is not None or self.max_power_mw is not None


@dataclass(frozen=True)
class TargetResult:
    name: str  # "arena", "model", "latency", "energy", "power"
    measured: float | None  # None: no figure to judge (detail says why); never met
    limit: float
    unit: str
    basis: str  # how the figure was obtained: "measured", "estimate", "virtual", ...
    at_least: bool = False  # True for figures that must reach the limit (accuracy, agreement)
    detail: str = ""  # shown instead of the numbers where they say little (e.g. two hashes)
    note: str = ""  # shown after the numbers (the rate a power is at, the highest rate that meets it)

    @property
    def met(self) -> bool:
        if self.measured is None:
            return False
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def describe(self) -> str:
        note = f"; {self.note}" if self.note else ""
        if self.detail:
            return f"{self.name}: {self.detail}{note}"
        relation = ">=" if self.at_least else "<="
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {self.measured:g}{unit} (needs {relation} {self.limit:g}{unit}){note}"

    def to_dict(self) -> dict:
        return {"target": self.name, "measured": self.measured, "limit": self.limit, "unit": self.unit,
                "basis": self.basis, "at_least": self.at_least, "met": self.met, "detail": self.detail,
                "note": self.note}

    @classmethod
    def from_dict(cls, raw: dict) -> "TargetResult":
        return cls(raw["target"], raw["measured"], raw["limit"], raw["unit"], raw["basis"],
                   raw.get("at_least", False), raw.get("detail", ""), raw.get("note", ""))


class EnergyFigures(Protocol):
    """Energy figures to judge (tinydeploy.costs.figures.Energy): per inference, and the average
    power at targets.rate_hz with the best sleep mode, each with its basis; None where missing."""
    energy_uj: float | None
    energy_basis: str
    average_mw: float | None
    power_basis: str
    rate_hz: float
    budget_mw: float
    mode_name: str | None  # the sleep mode of least average power at rate_hz, in words
    budget_note: str  # the highest rate within budget_mw, in words
    reason: str  # why a figure is missing


def _significant(value: float) -> float:
    """A figure without float noise, precise enough to judge: at 4 significant figures an average
    of 1.0005 mW would pass a 1 mW budget that the highest rate within it says it misses."""
    return float(f"{value:.9g}")


def check_energy(targets: Targets, energy: EnergyFigures) -> list[TargetResult]:
    """Judge energy per inference and average power at a rate; only the targets that are set.

    A missing figure (no power profile, no rate any sleep mode keeps) is a miss with the reason
    as its detail; a missed power target says the highest rate that meets it.
    """
    results = []
    if targets.max_energy_uj is not None:
        if energy.energy_uj is None:
            results.append(TargetResult("energy", None, targets.max_energy_uj, "µJ", "unavailable",
                                        detail=energy.reason))
        else:
            results.append(TargetResult("energy", _significant(energy.energy_uj), targets.max_energy_uj, "µJ",
                                        energy.energy_basis))
    if targets.max_power_mw is not None:
        assert energy.rate_hz == targets.rate_hz and energy.budget_mw == targets.max_power_mw, \
            "energy figures computed for other targets"
        if energy.average_mw is None:
            basis = energy.power_basis or "unavailable"
            results.append(TargetResult("power", None, targets.max_power_mw, "mW", basis, detail=energy.reason,
                                        note=energy.budget_note))
        else:
            result = TargetResult("power", _significant(energy.average_mw), targets.max_power_mw, "mW",
                                  energy.power_basis,
                                  note=f"average at {targets.rate_hz:g} Hz, {energy.mode_name} between inferences")
            if not result.met:
                result = TargetResult(**{**vars(result), "note": f"{result.note}; {energy.budget_note}"})
            results.append(result)
    return results


def check(targets: Targets, *, arena_bytes: float | None, model_bytes: float | None,
          latency_ms: float | None, arena_basis: str, latency_basis: str,
          energy: EnergyFigures | None = None) -> list[TargetResult]:
    """Compare figures with targets; a figure that is None is not judged.

    Args:
        targets: the budgets.
        arena_bytes, model_bytes, latency_ms: the figures.
        arena_basis, latency_basis: how those figures were obtained.
        energy: the energy figures, judged where targets.max_energy_uj or max_power_mw is set
            (check_energy).

    Returns:
        One TargetResult per judged figure.
    """
    results = []
    if arena_bytes is not None:
        results.append(TargetResult("arena", round(arena_bytes / 1024, 2), targets.max_arena_kb, "KB", arena_basis))
    if model_bytes is not None:
        results.append(TargetResult("model", round(model_bytes / 1024, 2), targets.max_model_kb, "KB", "measured"))
    if latency_ms is not None:
        results.append(TargetResult("latency", round(latency_ms, 3), targets.max_latency_ms, "ms", latency_basis))
    if energy is not None:
        results += check_energy(targets, energy)
    return results


def require_met(verdicts: list[TargetResult]) -> None:
    """Raise TargetMissed (exit 1) naming every verdict that missed its target."""
    missed = [v.describe() for v in verdicts if not v.met]
    if missed:
        raise TargetMissed("targets missed: " + "; ".join(missed))
