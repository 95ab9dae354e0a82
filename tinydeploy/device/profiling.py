"""Per-layer profiling on the device (layers%), beside the board profile's estimates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinydeploy.core.names import TFLM
from tinydeploy.core.protocol import VIRTUAL_LAYER_BASIS
from tinydeploy.device.connection import Connection


def profile_layers(conn: Connection, info: dict, model_path: str | Path | None = None,
                   boards_dir: tuple[str | Path, ...] = ()) -> dict:
    """Each layer's time on the device (the protocol's layers%: one more inference, timed per
    operator by the firmware's own clock), beside the board profile's estimate for it when the
    host has the model and knows the board (a shipped profile, or one in boards_dir or
    $TINYDEPLOY_BOARDS).

    Raises:
        DeviceError: the firmware has no per-layer profile, or the run failed.
    """
    lines = [line for line in conn.command("layers") if line.kind == "layer"]
    ticks = [line.value[1] for line in sorted(lines, key=lambda line: line.value[0])]
    timer, total = info.get("timer", "us"), sum(ticks)
    mhz = info.get("cpu_mhz")
    per_us = (1 / mhz) if timer == "instructions" and isinstance(mhz, (int, float)) and mhz > 0 else \
        (1.0 if timer == "us" else None)
    layers = [{"index": i, "ticks": t, "us": round(t * per_us, 3) if per_us else None,
               "share": round(t / total, 4) if total else None} for i, t in enumerate(ticks)]
    basis = VIRTUAL_LAYER_BASIS if info.get("virtual") else (
        f"instructions retired per layer (emulated board); µs at one instruction per cycle at {mhz} MHz, an estimate"
        if timer == "instructions" else "the device's µs clock around each layer")
    if model_path is not None:
        from tinydeploy.costs import counts
        from tinydeploy.core.boards import load_boards
        from tinydeploy.codegen.engines import ENGINES
        from tinydeploy.core.model import load_model
        model = load_model(model_path)
        board = load_boards(tuple(boards_dir)).get(str(info.get("board")))
        engine_name = str(info.get("engine", TFLM))
        engine = ENGINES.get(engine_name)
        timed = engine.timed_operators(model) if engine else [op.index for op in model.operators]
        every = {cost.index: cost for cost in counts.layer_costs(model)}
        kernels = board.kernels_for(engine_name) if board is not None else None
        if len(timed) == len(layers):  # the firmware times these operators, in order
            for layer, cost in zip(layers, (every[i] for i in timed)):
                outputs = int(np.prod(cost.output_shape))
                layer.update({"op": cost.op, "shape": list(cost.output_shape), "macs": cost.macs, "work": cost.work,
                              "outputs": outputs})
                if board is not None:  # the profile's cycles per MAC: what every estimate before flashing uses
                    layer["estimate_us"] = round(board.estimate_us(cost.op, cost.work, kernels, outputs), 3)
    return {"timer": timer, "basis": basis, "total_ticks": total, "layers": layers}
