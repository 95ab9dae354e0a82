"""A fixed-budget search on the digits demo, against the built-in default architecture.

Prints trials per minute on this machine, how many candidates were rejected
before training, the best int8 accuracy within budget, and how the searched
architecture compares with the default one at the same short training.
Run: .venv/bin/python bench/search_demo.py [TRIALS]
"""

import sys
import tempfile
import time
from pathlib import Path

import optuna

from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.optimize import OptimizeConfig, check_stages, optimize
from tinydeploy.optimize.search import SearchConfig, search


def main(trials: int = 20) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ds = data.load("digits", image_size=32)
    board = get_board("esp32-s3-devkitc-1")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        summary = search(SearchConfig(ds, Path(tmp) / "search", board, trials=trials, seed=0, budget="default"))
        minutes = (time.perf_counter() - started) / 60
        print(f"{summary['trials']} trials in {minutes:.1f} min: {summary['trials'] / minutes:.1f} trials/min; "
              f"{summary['rejected_before_training']} rejected before training, {summary['complete']} trained")
        best = summary.get("best")
        if not best:
            print("no trial met every budget")
            return
        print(f"best within budget (search training): {best['accuracy'] * 100:.2f}% · {best['latency_ms']:.3f} ms · "
              f"{best['arena_bytes']:,} B arena · {best['flash_bytes']:,} B flash")
        arch_only = check_stages(["arch"])
        from tinydeploy.optimize.architectures import Arch
        searched = optimize(OptimizeConfig(ds, Path(tmp) / "searched", board, budget="default", stages=arch_only,
                                           arch=Arch.from_dict(best["arch"]))).report["chosen"]
        default = optimize(OptimizeConfig(ds, Path(tmp) / "default", board, budget="default",
                                          stages=arch_only)).report["chosen"]
    for name, r in (("searched", searched), ("default", default)):
        print(f"{name:9} (optimize arch stage): {r['accuracy_tflm'] * 100:.2f}% · {r['latency_ms']:.3f} ms · "
              f"{r['arena_bytes']:,} B arena · {r['flash_bytes']:,} B flash")
    better = searched["accuracy_tflm"] > default["accuracy_tflm"]
    cheaper = searched["latency_ms"] <= default["latency_ms"] and searched["arena_bytes"] <= default["arena_bytes"]
    gap = (searched["accuracy_tflm"] - default["accuracy_tflm"]) * 100
    print("goal (more accurate at equal or lower latency and arena): " +
          ("met" if better and cheaper else f"not met: accuracy {gap:+.2f} points, "
           f"latency {searched['latency_ms'] - default['latency_ms']:+.3f} ms, "
           f"arena {searched['arena_bytes'] - default['arena_bytes']:+,} B"))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
