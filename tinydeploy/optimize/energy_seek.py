"""The energy targets in optimize: what the chosen model's energy is, and, when no model keeps
the power budget at the asked rate, the highest rate that one does.

The figures are estimates (tinydeploy.costs.figures.energy, from each engine's latency and the
board's [power] table), carried on every engine's cost (tinydeploy.optimize.engine_choice) and so
on every stage's metrics and every model the seek stage tried. Seeking itself is the seek
stage's: energy and power are cost targets there, like latency (tinydeploy.optimize.stages).
"""

from __future__ import annotations

import math

from tinydeploy.core.boards import Board
from tinydeploy.core.errors import BadInput
from tinydeploy.core.targets import Targets
from tinydeploy.costs.energy import MODE_NAMES, unavailable
from tinydeploy.optimize.metrics import StageMetrics


def check_board(board: Board, targets: Targets) -> None:
    """Refuse energy targets on a board that has no power figures to estimate them from.

    Raises:
        BadInput: --max-energy-uj or --max-power-mw is set and the board has no [power] table.
    """
    if targets.judges_energy and board.power is None:
        asked = [name for name, value in (("--max-energy-uj", targets.max_energy_uj),
                                          ("--max-power-mw", targets.max_power_mw)) if value is not None]
        raise BadInput(f"{' and '.join(asked)} can't be sought: {unavailable(board)}; add one, or choose a "
                       "board that has one (tinydeploy boards)")


def chosen_energy(metrics: StageMetrics) -> dict | None:
    """The energy estimate of a stage's model on the engine chosen for it (None: no engine runs it)."""
    return next((e.energy for e in metrics.engines if e.engine == metrics.engine and not e.unavailable), None)


def rate_at_most(rate_hz: float) -> str:
    """A rate, to three significant figures, rounded down (so that the rate said can be met)."""
    if rate_hz <= 0:
        return "0"
    unit = 10.0 ** (math.floor(math.log10(rate_hz)) - 2)
    return f"{math.floor(rate_hz / unit * (1 + 1e-12)) * unit:.3g}"


def _rate(energy: dict | None) -> tuple[float, str | None] | None:
    if not energy or not energy.get("available") or energy.get("max_rate_hz") is None:
        return None
    return energy["max_rate_hz"], energy.get("max_rate_mode")


def highest_rate(targets: Targets, chosen: StageMetrics, stages: list[StageMetrics],
                 seek: dict | None) -> str:
    """Where the power target is missed at the asked rate by every model found: the highest rate
    within the budget of the chosen model, and of the model found that allows the highest (a
    stage's, or one the seek stage costed untrained). "" where the target is met or not set.
    """
    power = next((t for t in chosen.targets if t.name == "power"), None)
    if targets.max_power_mw is None or power is None or power.met:
        return ""
    own = _rate(chosen_energy(chosen))
    if own is None:
        return ""
    found = [(rate, mode, f"the {s.stage} stage's model") for s in stages
             if (r := _rate(chosen_energy(s))) is not None for rate, mode in [r]]
    found += [(p["max_rate_hz"], None, f"a model the seek stage costed untrained ({p['blocks']} blocks, stride "
                                       f"{p['stride']}, {p['latency_ms']:g} ms)")
              for p in (seek or {}).get("tried", []) if p.get("max_rate_hz") is not None]
    best_rate, best_mode, best_what = max(found, key=lambda f: f[0]) if found else (*own, "the chosen model")

    def said(rate: float, mode: str | None) -> str:
        return f"{rate:.3g} Hz" + (f" ({MODE_NAMES[mode]} between inferences)" if mode else "")

    if best_rate <= 0:
        return (f"no model found keeps {targets.max_power_mw:g} mW at any rate on this board: resting between "
                "inferences alone draws more")
    text = (f"no model found keeps {targets.max_power_mw:g} mW at {targets.rate_hz:g} Hz; the chosen model "
            f"({chosen.stage}) keeps it up to {said(*own)}")
    if best_rate > own[0] * (1 + 1e-9):
        text += f", and the fastest found, {best_what}, up to {said(best_rate, best_mode)}"
    return text + f": the highest rate that can be met is {rate_at_most(best_rate)} Hz"
