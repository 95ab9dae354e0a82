"""How close cheap cost estimates come to measurements, for random search candidates.

For each candidate (no training), the pre-conversion estimates are:
  flash  ~ int8 weights + int32 biases (bytes of parameters), from the Keras model;
  arena  ~ the activation lower bound (largest sum of live tensors).
The measurements are the real int8 flatbuffer size and the smallest arena the
TFLM interpreter accepts. Goal (issue: search): flash within 5%, arena within
10%. tinydeploy's search measures every candidate (a conversion takes seconds),
so its budget checks use the measured values whatever this table shows.
Run: .venv/bin/python bench/estimator_accuracy.py [N]
"""

import sys

import optuna

from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.core import data
from tinydeploy.core.boards import get_board
from tinydeploy.optimize.search import cost, sample_arch


def parameter_bytes(arch, ds) -> int:
    plain = arch_lib.plain_model(arch, ds.input_shape, len(ds.labels))
    total = 0
    for layer in plain.layers:
        for weight in layer.get_weights():
            total += weight.size * (4 if weight.ndim == 1 else 1)  # int32 biases, int8 kernels
    return total


def main(count: int = 20) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ds = data.load("digits", image_size=32)
    board = get_board("esp32-s3-devkitc-1")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    print(f"{'#':>3} {'flash est':>9} {'measured':>9} {'err':>6} {'arena est':>9} {'measured':>9} {'err':>6}")
    flash_errors, arena_errors = [], []
    for i in range(count):
        trial = study.ask()
        arch = sample_arch(trial)
        measured = cost(arch, ds, board)
        flash_est = parameter_bytes(arch, ds)
        flash_err = (flash_est - measured.flash_bytes) / measured.flash_bytes
        arena_err = (measured.activation_lower_bound - measured.arena_bytes) / measured.arena_bytes
        flash_errors.append(abs(flash_err))
        arena_errors.append(abs(arena_err))
        print(f"{i:>3} {flash_est:>9,} {measured.flash_bytes:>9,} {flash_err:>+6.0%} "
              f"{measured.activation_lower_bound:>9,} {measured.arena_bytes:>9,} {arena_err:>+6.0%}")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    within = lambda errors, limit: sum(e <= limit for e in errors)  # noqa: E731
    print(f"flash estimate within 5%: {within(flash_errors, 0.05)}/{count}; "
          f"arena estimate within 10%: {within(arena_errors, 0.10)}/{count}")
    print("the estimates miss the flatbuffer's metadata and TFLM's persistent tail, so the search "
          "measures both (real conversion + TFLM arena) before training instead of estimating")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
