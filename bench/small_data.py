"""Small sensor-like sets: tinydeploy optimize's int8 test accuracy against a 1-NN baseline.

    python bench/small_data.py [--budgets fast default] [--sets digit-rows imu wave] [--board B] [--out DIR]
                               [--npz FILE.npz ...] [--stages arch,qat,...]

Sets made from what ships with installed packages, or by a known generator (nothing is
downloaded); each has few training windows and a separate test set:
- digit-rows: scikit-learn's 8x8 digits read as series, 8 steps of 8 channels (10 classes,
  40 training windows);
- imu: noisy 6-axis IMU-like gestures, 100 steps (4 classes, 40 training windows): each class
  is a movement (shake, tilt, circle, tap) with random amplitude, speed, phase and offset;
- wave: 1-channel gesture series, 150 steps (4 classes, 50 training windows): a bump, a ramp,
  a step and a two-tone burst at random positions and widths, in noise.

--npz adds your own sets: each file holds x_train/y_train and x_test/y_test.

For each set and budget it prints the int8 model's test accuracy on TFLM (evaluated once, on
the test windows only), its wall time, and the engine optimize chose with its flash, arena
and latency estimate on the board, and beside it a 1-nearest-neighbour
Euclidean classifier of the same training windows (raw and z-normalised per window; the
better one). Goal (issue 11): the default budget beats 1-NN on every set; the fast budget
reaches 90% of 1-NN and 95% of the default budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def digit_rows(rng: np.random.Generator, train: int = 40):
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = digits.images.astype(np.float32)  # (N, 8, 8): 8 steps of 8 channels
    order = rng.permutation(len(x))
    return _split(x[order], digits.target[order], train, rng)


def imu(rng: np.random.Generator, train: int = 40, test: int = 200, steps: int = 100):
    t = np.linspace(0, 1, steps, dtype=np.float32)

    def window(kind: int) -> np.ndarray:
        speed, phase = rng.uniform(0.7, 1.4), rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.6, 1.4)
        x = np.zeros((steps, 6), np.float32)
        if kind == 0:  # shake: fast oscillation on one accelerometer axis
            x[:, 0] = amp * np.sin(2 * np.pi * 6 * speed * t + phase)
        elif kind == 1:  # tilt: slow change of gravity between two axes
            angle = amp * np.clip((t - rng.uniform(0.2, 0.5)) * 3 * speed, 0, 1)
            x[:, 1], x[:, 2] = np.sin(angle), np.cos(angle) - 1
        elif kind == 2:  # circle: two gyro axes in quadrature
            x[:, 3] = amp * np.sin(2 * np.pi * 2 * speed * t + phase)
            x[:, 4] = amp * np.cos(2 * np.pi * 2 * speed * t + phase)
        else:  # tap: a short spike on the z axis and the matching gyro kick
            at = int(rng.uniform(0.1, 0.9) * steps)
            x[at:at + 3, 2] += amp * 2.5
            x[at:at + 6, 5] += amp * np.hanning(6)[: min(6, steps - at)]
        x += rng.normal(0, 0.25, x.shape).astype(np.float32)  # sensor noise
        x += rng.normal(0, 0.3, (1, 6)).astype(np.float32)  # per-window offset (orientation, bias)
        return x

    y = rng.integers(0, 4, train + test)
    x = np.stack([window(int(k)) for k in y])
    return _split(x, y, train, rng)


def wave(rng: np.random.Generator, train: int = 50, test: int = 200, steps: int = 150):
    t = np.arange(steps, dtype=np.float32)

    def window(kind: int) -> np.ndarray:
        at, width = rng.uniform(0.2, 0.8) * steps, rng.uniform(8, 25)
        amp = rng.uniform(0.7, 1.3)
        if kind == 0:
            x = amp * np.exp(-0.5 * ((t - at) / width) ** 2)
        elif kind == 1:
            x = amp * np.clip((t - at) / (2 * width) + 0.5, 0, 1)
        elif kind == 2:
            x = amp * (t > at).astype(np.float32)
        else:
            envelope = np.exp(-0.5 * ((t - at) / width) ** 2)
            x = amp * envelope * np.sin(2 * np.pi * t / rng.uniform(5, 9)) * np.sign(np.sin(t / width))
        return (x + rng.normal(0, 0.2, steps) + rng.normal(0, 0.3)).astype(np.float32)[:, None]

    y = rng.integers(0, 4, train + test)
    x = np.stack([window(int(k)) for k in y])
    return _split(x, y, train, rng)


def _split(x, y, train: int, rng):
    # Every class in the training windows at least twice (validation needs a stratified split).
    classes = np.unique(y)
    picked = [i for c in classes for i in np.flatnonzero(y == c)[:2]]
    rest = [i for i in range(len(x)) if i not in set(picked)]
    picked += rest[: train - len(picked)]
    test = [i for i in range(len(x)) if i not in set(picked)][:200]
    return x[picked], y[picked], x[test], y[test]


def _from_npz(path: Path):
    with np.load(path) as f:
        return f["x_train"], f["y_train"], f["x_test"], f["y_test"]


SETS = {"digit-rows": digit_rows, "imu": imu, "wave": wave}


def one_nn(x_train, y_train, x_test, y_test) -> float:
    """1-nearest-neighbour Euclidean accuracy, raw and z-normalised per window: the better."""
    def accuracy(a, b):
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        d = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None, :]
        return float((y_train[d.argmin(1)] == y_test).mean())

    def znorm(v):
        flat = v.reshape(len(v), -1)
        return ((flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-8)).reshape(v.shape)

    return max(accuracy(x_train, x_test), accuracy(znorm(x_train), znorm(x_test)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--budgets", nargs="*", default=["fast", "default"])
    parser.add_argument("--board", default="esp32-s3-devkitc-1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("build/small_data"))
    parser.add_argument("--npz", nargs="*", type=Path, default=[],
                        help="more sets: .npz files with x_train/y_train and x_test/y_test")
    parser.add_argument("--stages", help="optimize only these stages (comma-separated; default: all)")
    args = parser.parse_args(argv)

    from tinydeploy.core.boards import get_board
    from tinydeploy.core.data import from_arrays
    from tinydeploy.optimize import STAGES, OptimizeConfig, check_stages, optimize
    board = get_board(args.board)
    stages = check_stages(args.stages.split(",")) if args.stages else STAGES
    sets = {name: SETS[name] for name in args.sets}
    for path in args.npz:
        sets[path.stem] = lambda rng, path=path: _from_npz(path)
    print(f"{'set':11} {'budget':8} {'train':>5} {'test':>4} {'int8 test acc (95% CI)':>24} {'1-NN':>6} "
          f"{'time s':>7} {'flash B':>8} {'arena B':>8} {'ms est.':>7} engine stage")
    for name, make in sets.items():
        rng = np.random.default_rng(args.seed)
        x_train, y_train, x_test, y_test = make(rng)
        baseline = one_nn(x_train, y_train, x_test, y_test)
        for budget in args.budgets:
            data = from_arrays(x_train, y_train, None, None, name, seed=args.seed).with_test(x_test, y_test, name)
            started = time.perf_counter()
            report = optimize(OptimizeConfig(data=data, out=args.out / name / budget, board=board, budget=budget,
                                             seed=args.seed, force=True, data_source=name,
                                             stages=stages)).report
            seconds = time.perf_counter() - started
            test, chosen = report["test"], report["chosen"]  # evaluated once, on TFLM, for the chosen model
            low, high = test["interval95"]
            print(f"{name:11} {budget:8} {len(x_train):>5} {len(x_test):>4} "
                  f"{test['accuracy']:>8.3f} ({low:.2f}-{high:.2f})      {baseline:>6.3f} {seconds:>7.0f} "
                  f"{chosen['flash_bytes']:>8,} {chosen['arena_bytes']:>8,} {chosen['latency_ms']:>7.3f} "
                  f"{chosen['engine']:6} {chosen['stage']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
