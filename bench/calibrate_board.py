"""Calibration on the emulated RV32 board: does `tinydeploy calibrate` learn the board?

Three int8 models of different shapes (untrained: timing does not depend on the weights) run
as C-engine firmware on qemu-riscv32, each profiled per layer (`bench --profile`). Calibrate
on two, then estimate the third, which the fit never saw, with the shipped profile and with
the calibrated one, and print the errors against the goals of issue 15: median per-layer
estimate error <= 10%, whole-network error <= 5%. Every rotation (each model held out once)
is printed.

Usage: .venv/bin/python bench/calibrate_board.py [WORK_DIR]
"""

import tempfile
from pathlib import Path

import numpy as np

from tinydeploy import api
from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.device.calibrate import _errors, _measured_layers, calibrate
from tinydeploy.optimize.architectures import Arch, Block, default_arch, untrained_model

BOARD = "qemu-riscv32"


def models(work: Path) -> dict[str, Path]:
    """The digits demo's architecture, a wider net with 5x5 kernels and stride 2, and a time-series model."""
    digits = data.load("digits", image_size=16, seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 96, 3)).astype("float32"), np.arange(64) % 4  # 96 steps of 3 axes, 4 classes
    series = data.from_arrays(x, y, None, None, "series")
    specs = {
        "demo-arch": (default_arch(digits.input_shape), digits),
        "wide-5x5": (Arch((Block("conv", 12, 5, 2), Block("separable", 24, 5, 1, pool=True),
                           Block("separable", 48, 3, 1), Block("depthwise", 48, 3, 1, residual=True)), 16), digits),
    }
    specs["series"] = (default_arch(series.input_shape), series)
    paths = {}
    for name, (arch, dataset) in specs.items():
        path = work / f"{name}.tflite"
        path.write_bytes(untrained_model(arch, dataset).data)
        paths[name] = path
    return paths


def profiled(name: str, model: Path, work: Path) -> Path:
    project = work / name
    api.render(model, BOARD, project)
    api.build(project)
    with api.emulate(project) as emulator:
        api.bench(emulator.url, work / f"{name}-bench", runs=3, expect_model=model, profile=True)
    return work / f"{name}-bench" / "results.json"


def main() -> None:
    import json
    import sys
    board = get_board(BOARD)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tmp)  # a folder to keep the runs in
        work.mkdir(parents=True, exist_ok=True)
        runs = {name: profiled(name, path, work) for name, path in models(work).items()}
        print(f"{len(runs)} models on {BOARD}: {', '.join(runs)}")
        for held_out in runs:
            train = [path for name, path in runs.items() if name != held_out]
            fitted = calibrate(train, board, work / f"cal-{held_out}")
            test = _measured_layers(json.loads(runs[held_out].read_text()), held_out, board)
            before, after = (_errors(board, [dict(l) for l in test], "c"),
                             _errors(fitted.board, [dict(l) for l in test], "c"))
            print(f"held out {held_out}: median layer error {before['median_layer_error']:.1%} -> "
                  f"{after['median_layer_error']:.1%} (goal <= 10%); whole network {before['median_network_error']:.1%} "
                  f"-> {after['median_network_error']:.1%} (goal <= 5%); uncalibrated kinds: "
                  f"{', '.join(fitted.uncalibrated) or 'none'}")


if __name__ == "__main__":
    main()
