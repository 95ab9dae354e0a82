"""Figures for the optimize goals, on the built-in digits demo (32x32x1).

Goals (issue: optimize): the default budget finishes in <= 10 min on a 2-core
CPU, its final int8 model reaches >= 97% validation accuracy on the TFLM
interpreter and fits 64 KB arena / 20 KB flash / 1 ms estimated on the
ESP32-S3; the fast budget finishes in <= 2 min.
Run: .venv/bin/python bench/optimize_demo.py [fast|default|thorough ...]
"""

import os
import sys
import tempfile
import time
from pathlib import Path

from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.optimize import OptimizeConfig, optimize

LIMIT_SECONDS = {"fast": 120, "default": 600}


def run(budget: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        config = OptimizeConfig(data.load("digits", image_size=32, seed=0), Path(tmp), get_board("esp32-s3-devkitc-1"),
                                budget=budget, seed=0)
        result = optimize(config)
        seconds = time.perf_counter() - started
    chosen = result.report["chosen"]
    print(f"\n== budget {budget} on {os.cpu_count()} cores, seed 0 ==")
    print(f"{'stage':12} {'int8 acc':>9} {'flash B':>8} {'arena B':>8} {'MACs':>8} {'lat ms':>7} {'s':>6}")
    for s in result.report["stages"]:
        print(f"{s['stage']:12} {s['accuracy'] * 100:8.2f}% {s['flash_bytes']:8,} {s['arena_bytes']:8,} "
              f"{s['macs']:8,} {s['latency_ms']:7.3f} {s['seconds']:6.1f}")
    print(f"chosen: {chosen['stage']} · {chosen['accuracy_tflm'] * 100:.2f}% on TFLM · {chosen['flash_bytes']:,} B flash · "
          f"{chosen['arena_bytes']:,} B arena · {chosen['latency_ms']:.3f} ms est. (ESP32-S3)")
    print(f"TFLM vs TFLite reference: top-1 agreement {chosen['reference_check']['top1_agreement'] * 100:.1f}%, "
          f"max output difference {chosen['reference_check']['max_output_diff_lsb']} LSB")
    limit = LIMIT_SECONDS.get(budget)
    print(f"wall time {seconds:.0f} s" + (f" (goal <= {limit} s: {'met' if seconds <= limit else 'MISSED'})" if limit else ""))
    if budget == "default":
        print(f"accuracy goal >= 97%: {'met' if chosen['accuracy_tflm'] >= 0.97 else 'MISSED'}; "
              f"targets: {'met' if result.met else 'MISSED ' + '; '.join(result.missed)}")


if __name__ == "__main__":
    for budget in sys.argv[1:] or ["fast", "default"]:
        run(budget)
