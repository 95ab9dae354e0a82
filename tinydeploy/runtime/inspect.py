"""`tinydeploy inspect`: what a .tflite model will cost on a board, before flashing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tinydeploy.costs import arena as arena_model
from tinydeploy.costs import counts, figures, liveness
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import Board
from tinydeploy.core.model import Model, load_model
from tinydeploy.core.model_frontend import device_frontend
from tinydeploy.core.names import TFLM
from tinydeploy.core.targets import TargetResult, Targets, check

ENGINE = TFLM  # inspect reports what TFLM needs; its latency is the board's estimate for TFLM


@dataclass
class InspectReport:
    model: Model
    board: Board
    layers: list[counts.LayerCost]
    activation_lower_bound: int
    arena: tflm.ArenaMeasurement | None
    cost: figures.Figures  # arena, flash, latency and energy on the board: the TFLM engine's (tinydeploy.costs.figures)
    framework: str
    targets: list[TargetResult]
    unsupported: list[str]
    problems: list[str] = field(default_factory=list)  # bad-input findings, shown after the figures

    @property
    def board_arena(self) -> arena_model.BoardArena | None:
        """What the board's firmware needs, with its kernels (None for a float or unloadable model)."""
        return self.cost.board_arena

    @property
    def latency_ms(self) -> float:
        return self.cost.latency_ms

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def ops(self) -> list[dict]:
        tally = Counter((op.name, op.version) for op in self.model.all_operators)
        return [{"op": name, "version": version, "count": n,
                 "tflm_supported": name not in self.unsupported}
                for (name, version), n in sorted(tally.items())]

    def _scratch_by_op(self) -> dict[int, int]:
        found: dict[int, int] = {}
        for buffer in (self.board_arena.scratch if self.board_arena else ()):
            found[buffer.op] = found.get(buffer.op, 0) + buffer.size
        return found

    def frontend_share(self) -> dict | None:
        """The front end's share of the figures (None for a model without one): the arena,
        flash and latency above include it."""
        cost = self.cost.frontend
        if cost is None:
            return None
        found = device_frontend(self.model)
        share = figures.frontend_latency(cost, self.board)
        return {"describe": found.front.describe(), "window": list(found.window),
                "features": list(found.front.output_shape(found.window)), "ram_bytes": cost.ram_bytes,
                "scratch_bytes": cost.scratch_bytes, "window_bytes": cost.input_bytes,
                "flash_bytes_estimate": cost.flash_bytes_estimate, "table_bytes": cost.table_bytes + cost.struct_bytes,
                "code_bytes_estimate": cost.code_bytes_estimate, "operations": cost.operations,
                "cycles_estimate": cost.cycles_estimate, "latency_ms": share.ms, "latency_basis": share.basis,
                "share_of_latency": round(share.ms / self.latency_ms, 4) if self.latency_ms else None,
                "stages": [{"what": what, "operations": ops} for what, ops in cost.by_stage]}

    @property
    def targets_met(self) -> bool:
        return all(t.met for t in self.targets)

    def to_dict(self) -> dict:
        m = self.model
        return {
            "model": m.path,
            "sha256": m.sha256,
            "flash_bytes": self.cost.flash_bytes,
            "params": counts.param_count(m),
            "int8": m.is_int8,
            "operators": self.ops,
            "operator_count": len(m.all_operators),
            "inputs": [t.describe() for t in m.input_tensors],
            "outputs": [t.describe() for t in m.output_tensors],
            "layers": [layer.to_dict() | {"scratch_bytes": self._scratch_by_op().get(layer.index, 0)}
                       for layer in self.layers],
            "macs": self.macs,
            "arena": self.arena.to_dict() if self.arena else None,
            "board_arena": (self.board_arena.to_dict() | {"board": self.board.name, "framework": self.framework}
                            if self.board_arena else None),
            "activation_lower_bound_bytes": self.activation_lower_bound,
            "latency": {"board": self.board.name, "kernels": self.board.kernels_for(ENGINE),
                        "ms": round(self.latency_ms, 3), "basis": f"estimate, {self.board.estimate_basis(ENGINE)}",
                        "source": self.board.latency_source},
            "energy": self.cost.energy.to_dict(),
            "frontend": self.frontend_share(),
            "targets": [t.to_dict() for t in self.targets],
            "targets_met": self.targets_met,
            "problems": self.problems,
        }


def inspect(model_path: str | Path, board: Board, targets: Targets = Targets(),
            framework: str | None = None) -> InspectReport:
    """Measure and estimate what a model costs on a board.

    Args:
        model_path: the .tflite file.
        board: the board profile to estimate latency and size the arena for.
        targets: budgets to judge the figures against; the arena target is judged on what
            the board needs (its kernel library's scratch, 32-bit structs), not the host figure.
            Its rate_hz and power_budget_mw set the rate the average power is estimated at and
            the budget the highest rate is stated against.
        framework: the firmware framework, which picks the board's TFLM kernel library
            (default: the board profile's framework).

    Returns:
        The report. Problems that make the model undeployable (float, ops that
        TFLM lacks) are listed in ``report.problems``; every figure that can
        still be obtained is filled in.

    Raises:
        BadInput: the file is missing, empty or not a TFLite flatbuffer.
    """
    model = load_model(model_path)
    unsupported = tflm.unsupported_ops(model)
    problems = []
    if not model.is_int8:
        problems.append(f"{model.int8_problem}: not deployable as int8. Run `tinydeploy optimize`, "
                        "or give a fully int8-quantized model")
    if unsupported:
        problems.append(f"ops TFLM does not support: {', '.join(unsupported)}. "
                        f"Supported: {', '.join(sorted(tflm.RESOLVER_METHODS))}")
    arena = None if unsupported else tflm.measure_arena(model)
    framework = framework or board.framework
    cost = figures.tflm(model, arena, board, framework, rate_hz=targets.rate_hz, budget_mw=targets.power_budget_mw)
    results = check(targets, arena_bytes=cost.arena_bytes, model_bytes=cost.flash_bytes, latency_ms=cost.latency_ms,
                    arena_basis=cost.arena_basis, latency_basis=cost.latency_basis, energy=cost.energy)
    return InspectReport(model, board, counts.layer_costs(model), liveness.activation_lower_bound(model), arena, cost,
                         framework, results, unsupported, problems)
