"""`tinydeploy inspect`: what a .tflite model will cost on a board, before flashing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tinydeploy.costs import arena as arena_model
from tinydeploy.costs import counts
from tinydeploy.runtime import tflm
from tinydeploy.core.boards import Board
from tinydeploy.core.model import Model, load_model
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
    board_arena: arena_model.BoardArena | None  # what the board's firmware needs, with its kernels
    framework: str
    latency_ms: float
    targets: list[TargetResult]
    unsupported: list[str]
    problems: list[str] = field(default_factory=list)  # bad-input findings, shown after the figures

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

    @property
    def targets_met(self) -> bool:
        return all(t.met for t in self.targets)

    def to_dict(self) -> dict:
        m = self.model
        return {
            "model": m.path,
            "sha256": m.sha256,
            "flash_bytes": m.size_bytes,
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
    need = arena_model.for_board(model, arena, board, framework) if arena and model.is_int8 else None
    layers = counts.layer_costs(model)
    latency_ms = counts.latency_estimate_ms(model, board, board.kernels_for(ENGINE))
    if need:
        arena_bytes, arena_basis = need.arena_bytes, f"{board.name}, {need.kernels} kernels, 32-bit (derived)"
    else:
        arena_bytes, arena_basis = (arena.arena_bytes if arena else None), "measured (TFLM, host)"
    results = check(targets, arena_bytes=arena_bytes, model_bytes=model.size_bytes, latency_ms=latency_ms,
                    arena_basis=arena_basis, latency_basis=f"estimate ({board.name}, {board.estimate_basis(ENGINE)})")
    return InspectReport(model, board, layers, counts.activation_lower_bound(model), arena, need, framework,
                         latency_ms, results, unsupported, problems)
