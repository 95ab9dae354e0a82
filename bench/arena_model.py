"""How close tinydeploy's board arena is to what a 32-bit build of the real TFLM needs.

    python bench/arena_model.py --tflm ESP_TFLITE_MICRO_DIR --esp-nn ESP_NN_DIR [--models 24] [--fit]

For a set of int8 models (random architectures from the search space, images and series,
random weights: sizes don't depend on values), it builds bench/host_shim/arena_probe.cc
against esp-tflite-micro's TFLM with each kernel library (reference, ESP-NN generic, and
ESP-NN with the S3's scratch requests), 32-bit (gcc -m32, ILP32 like Xtensa and RV32), and
reads arena_used_bytes() of a plain MicroInterpreter. Beside it, it prints tinydeploy's
figure (tinydeploy.costs.arena.board_arena) and the error.

--fit: fit the tail's per-operator 32-bit differences (tinydeploy.costs.arena.TAIL_32BIT) on those
models, then measure --holdout fresh ones (another seed) and report the error on them only.
Without --fit, every model is a test of the constants in tinydeploy.costs.arena.

Goals (issue 12): within 3% of the 32-bit build's need for each kernel library; on the S3
the arena covers ESP-NN's scratch with at most 10% slack.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import firmware_host_check as host  # noqa: E402

LIBRARIES = ("reference", "esp-nn", "esp-nn-s3")


def make_models(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """Random architectures from the search space, as int8 models with random weights."""
    import optuna

    from tinydeploy.runtime import _tf
    from tinydeploy.optimize.architectures import plain_model, with_softmax
    from tinydeploy.optimize.convert import to_int8_tflite
    from tinydeploy.optimize.search import sample_arch
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    keras = _tf.keras()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    shapes = [((32, 32, 1), 10), ((24, 24, 3), 5), ((96, 6), 4), ((128, 1), 3)]
    paths = []
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        path = folder / f"s{seed}-model{i:02d}.tflite"
        paths.append(path)
        if path.exists():
            continue
        shape, classes = shapes[i % len(shapes)]
        arch = sample_arch(study.ask())
        keras.utils.set_random_seed(seed + i)
        try:
            model = with_softmax(plain_model(arch, shape, classes))
        except Exception as exc:  # noqa: BLE001 - an architecture too deep for the input
            print(f"  skip {path.name}: {exc}", file=sys.stderr)
            paths.pop()
            continue
        rep = np.random.default_rng(i).normal(size=(32, *shape)).astype(np.float32)
        path.write_bytes(to_int8_tflite(model, rep))
    return paths


def build_probe(library: str, tflm: Path, esp_nn: Path, work: Path) -> Path:
    builder = host.Builder(work / "objects", 32)
    lib = host.tflm_library(builder, "espidf", library, tflm, esp_nn, None)
    probe = builder.compile([HERE / "host_shim/arena_probe.cc"],
                            [*host.STRICT, "-O2", *lib.platform, *(f"-isystem{p}" for p in lib.includes),
                             "-DTF_LITE_STATIC_MEMORY"])
    return builder.link(lib.objects + probe, work / f"arena_probe_{library}")


def probe(binary: Path, model: Path) -> dict:
    done = subprocess.run([str(binary)], env={**os.environ, "TD_PROBE_MODEL": str(model)},
                          capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(f"{binary.name} on {model.name}: {done.stderr.strip()}")
    return json.loads(done.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflm", type=Path, required=True, help="an esp-tflite-micro source tree")
    parser.add_argument("--esp-nn", type=Path, required=True, help="an esp-nn source tree")
    parser.add_argument("--models", type=int, default=24, help="random models to measure (default 24)")
    parser.add_argument("--extra", type=Path, nargs="*", default=[], help="more .tflite models to measure")
    parser.add_argument("--fit", action="store_true", help="fit the tail constants on the models")
    parser.add_argument("--holdout", type=int, default=16, help="fresh models to test a fit on (default 16)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tinydeploy-host-check")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args(argv)

    from tinydeploy.costs import arena, kernels
    from tinydeploy.runtime import tflm
    from tinydeploy.core.errors import StepFailed
    from tinydeploy.core.model import load_model
    probes = {lib: build_probe(lib, args.tflm, args.esp_nn, args.work) for lib in LIBRARIES}

    def measure(paths: list[Path]) -> list[dict]:
        rows = []
        for path in paths:
            model = load_model(path)
            try:
                host64 = tflm.measure_arena(model).to_dict()
            except StepFailed as exc:  # a random architecture TFLM can't hold: not a test of the model
                print(f"  skip {path.name}: {exc}", file=sys.stderr)
                continue
            row = {"model": path.name, "path": str(path), "ops": dict(Counter(op.name for op in model.operators)),
                   "tensors": len(model.tensors), "host64": host64}
            for lib in LIBRARIES:
                row[lib] = probe(probes[lib], path)
            rows.append(row)
            print(f"measured {path.name}", file=sys.stderr)
        return rows

    rows = measure(make_models(args.work / "arena-models", args.models) + list(args.extra))
    fitted = None
    if args.fit:
        fitted = arena.fit_tail(rows, [load_model(r["path"]) for r in rows], LIBRARIES)
        print("fitted TAIL_32BIT =", json.dumps(fitted, indent=1, sort_keys=True))
        rows = measure(make_models(args.work / "arena-models", args.holdout, seed=1000))
    tests = rows
    worst = {lib: 0.0 for lib in LIBRARIES}
    print(f"{'model':14} {'library':10} {'32-bit need':>11} {'tinydeploy':>10} {'error':>7}  scratch")
    for row in tests:
        model = load_model(row["path"])
        measured = tflm.ArenaMeasurement.from_dict(row["host64"])
        for lib in LIBRARIES:
            need = row[lib]["arena_used_bytes"]
            ours = arena.board_arena(model, measured, kernels.library(lib), tail=fitted)
            error = (ours.arena_bytes - need) / need
            worst[lib] = max(worst[lib], abs(error))
            row.setdefault("tinydeploy", {})[lib] = ours.to_dict()
            print(f"{row['model']:14} {lib:10} {need:>11,} {ours.arena_bytes:>10,} {error:>+7.1%}  "
                  f"{ours.scratch_bytes:,} B in {len(ours.scratch)} buffers")
    print("largest error: " + ", ".join(f"{lib} {e:.1%}" for lib, e in worst.items()) + " (goal: within 3%)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
