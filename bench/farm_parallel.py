"""A farm of emulated boards: does benching two in parallel cost what benching one does?

    .venv/bin/python bench/farm_parallel.py [--runs N] [--validate N]

The digits demo's architecture (untrained: timing does not depend on the weights) is rendered
and built for the emulated RV32 board once. Then it is benched on one emulator (`bench`),
on two in parallel (`bench --farm`), and on two where one emulator is killed half-way. Goals
(issue 16): two boards take at most 1.3x the time of one on a 2-core machine, and no result
of the healthy board is lost when the other is killed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from tinydeploy import api
from tinydeploy.core import data
from tinydeploy.device.farm import FarmBoard, summary
from tinydeploy.optimize.architectures import default_arch, untrained_model

BOARD = "qemu-riscv32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--validate", type=int, default=100, help="labelled digits run on each board")
    args = parser.parse_args()
    options = {"runs": args.runs, "validate": args.validate, "data": "digits", "image_size": 16}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        digits = data.load("digits", image_size=16, seed=0)
        model = work / "model.tflite"
        model.write_bytes(untrained_model(default_arch(digits.input_shape), digits).data)
        project = work / "fw"
        api.render(model, BOARD, project)
        api.build(project)

        with api.emulate(project) as warm:
            # Once untimed, on an emulator of its own: the first run in a process pays one-time
            # costs (TensorFlow's import for the host reference) that the runs after it don't.
            api.bench(warm.url, work / "warm-up", expect_model=model, **options)
        with api.emulate(project) as one:
            started = time.perf_counter()
            api.bench(one.url, work / "one", expect_model=model, **options)
            single = time.perf_counter() - started

        with api.emulate(project) as a, api.emulate(project) as b:
            # reset as the single run's bench does (a socket port has no reset line: both only sync)
            boards = [FarmBoard("a", a.url, BOARD, "rts"), FarmBoard("b", b.url, BOARD, "rts")]
            started = time.perf_counter()
            rows = api.bench_farm(boards, work / "two", expect_model=model, **options)
            pair = time.perf_counter() - started
        print(f"{BOARD}, {args.runs} timed runs and {args.validate} validated samples a board:")
        print(f"  one board: {single:.1f} s; two in parallel: {pair:.1f} s = {pair / single:.2f}x (goal <= 1.3x); "
              f"both ok: {all(row.ok for row in rows)}")

        with api.emulate(project) as healthy, api.emulate(project) as doomed:
            boards = [FarmBoard("healthy", healthy.url, BOARD, "none"), FarmBoard("killed", doomed.url, BOARD, "none")]
            killer = threading.Timer(single / 2, doomed.stop)  # half-way through its run
            killer.start()
            rows = api.bench_farm(boards, work / "killed", expect_model=model, timeout=3, **options)
            killer.join()
        result = summary(rows)
        kept = json.loads((work / "killed" / "healthy" / "results.json").read_text())
        print(f"  one of two killed half-way: failed {result['failed']}; the healthy board's results complete: "
              f"{kept['complete']} ({kept['latency_us']['runs']} timings, "
              f"{kept['validation']['samples'] if kept['validation'] else 0} samples validated)")


if __name__ == "__main__":
    main()
