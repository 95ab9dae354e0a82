"""Deployment targets (budgets) and checking figures against them.

Shared by inspect, optimize and verify, so every command judges the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinydeploy.core.bounds import problem
from tinydeploy.core.errors import BadInput, TargetMissed

# The reference targets: a 64 KB tensor arena, a 20 KB model, 1 ms inference.
DEFAULT_MAX_ARENA_KB = 64.0
DEFAULT_MAX_MODEL_KB = 20.0
DEFAULT_MAX_LATENCY_MS = 1.0


@dataclass(frozen=True)
class Targets:
    max_arena_kb: float = DEFAULT_MAX_ARENA_KB
    max_model_kb: float = DEFAULT_MAX_MODEL_KB
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS

    def __post_init__(self):
        bad = [problem("--" + name.replace("_", "-"), value) for name, value in vars(self).items()]
        if any(bad):
            raise BadInput("; ".join(b for b in bad if b))


@dataclass(frozen=True)
class TargetResult:
    name: str  # "arena", "model", "latency"
    measured: float
    limit: float
    unit: str
    basis: str  # how the figure was obtained: "measured", "estimate", "virtual", ...
    at_least: bool = False  # True for figures that must reach the limit (accuracy, agreement)
    detail: str = ""  # shown instead of the numbers where they say little (e.g. two hashes)

    @property
    def met(self) -> bool:
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def describe(self) -> str:
        if self.detail:
            return f"{self.name}: {self.detail}"
        relation = ">=" if self.at_least else "<="
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {self.measured:g}{unit} (needs {relation} {self.limit:g}{unit})"

    def to_dict(self) -> dict:
        return {"target": self.name, "measured": self.measured, "limit": self.limit, "unit": self.unit,
                "basis": self.basis, "at_least": self.at_least, "met": self.met, "detail": self.detail}

    @classmethod
    def from_dict(cls, raw: dict) -> "TargetResult":
        return cls(raw["target"], raw["measured"], raw["limit"], raw["unit"], raw["basis"],
                   raw.get("at_least", False), raw.get("detail", ""))


def check(targets: Targets, *, arena_bytes: float | None, model_bytes: float | None,
          latency_ms: float | None, arena_basis: str, latency_basis: str) -> list[TargetResult]:
    """Compare figures with targets; a figure that is None is not judged.

    Args:
        targets: the budgets.
        arena_bytes, model_bytes, latency_ms: the figures.
        arena_basis, latency_basis: how those figures were obtained.

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
    return results


def require_met(verdicts: list[TargetResult]) -> None:
    """Raise TargetMissed (exit 1) naming every verdict that missed its target."""
    missed = [v.describe() for v in verdicts if not v.met]
    if missed:
        raise TargetMissed("targets missed: " + "; ".join(missed))
