"""The nearest stage's classifier (tinydeploy.optimize.nearest): exactly 1-NN before training,
int8 on both engines, and better than 1-NN after leave-one-out training on a set where
the nearest window is often of the wrong class."""

import numpy as np
import pytest

from tinydeploy.codegen.engines import ENGINES
from tinydeploy.runtime.evaluate import evaluate
from tinydeploy.core.model import parse_model
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import nearest
from tinydeploy.optimize.convert import to_int8_tflite

pytestmark = pytest.mark.host


def shifted_bumps(n: int, seed: int, steps: int = 60, noise: float = 0.1):
    """3 classes of 2-channel windows: a bump on channel 0, on channel 1, or on both, near the
    middle, in noise (strong noise: the nearest window is often of another class)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :]
    y = np.arange(n) % 3
    bump = np.exp(-0.5 * ((t - steps / 2 - rng.uniform(-3, 3, (n, 1))) / 6) ** 2)
    x = np.stack([bump * (y[:, None] != 1), bump * (y[:, None] != 0) * 0.8], axis=-1)
    x = (x + rng.normal(0, noise, x.shape)) * 40 + 100  # raw sensor counts, offset and scaled
    return x.astype(np.float32), y


def one_nn(x_train, y_train, x):
    """1-NN in the per-channel normalized space of the training windows."""
    norm = arch_lib.Normalization.of(x_train)
    a = ((x_train - norm.mean) / norm.std).reshape(len(x_train), -1)
    b = ((x - norm.mean) / norm.std).reshape(len(x), -1)
    return y_train[((b[:, None] - a[None]) ** 2).sum(-1).argmin(1)]


def test_untrained_it_is_1nn_and_its_int8_model_runs_on_both_engines():
    x, y = shifted_bumps(24, seed=0)
    probe, _ = shifted_bumps(200, seed=1)
    plain, arch, made = nearest.model(x, y, 3, per_class=8, steps=0)
    assert arch.prototypes == 8 and made["prototypes"] == "every one of 24 windows"
    assert (plain.predict(probe, verbose=0).argmax(1) == one_nn(x, y, probe)).all()
    model = parse_model(to_int8_tflite(arch_lib.with_softmax(plain), x))
    assert {op.name for op in model.operators} <= {"RESHAPE", "FULLY_CONNECTED", "MAX_POOL_2D", "SOFTMAX"}
    for engine in ENGINES.values():
        engine.check(model)  # raises when an engine can't run it


def test_a_window_is_masked_from_every_copy_of_itself():
    from tinydeploy.optimize.nearest import init_prototypes
    z, y = np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 0, 0, 1, 1, 2])
    protos, copies, how = init_prototypes(z, y, 3, 3, np.random.default_rng(0))
    assert how == "every one of 6 windows" and copies.shape == (6, 9)
    for window, slots in enumerate(copies):  # unit i * 3 + c is class c's i-th prototype
        held = [unit for unit in range(9) if (protos.reshape(9, 2)[unit] == z[window]).all()]
        assert list(np.flatnonzero(slots)) == held
    assert copies[5].sum() == 3  # the one window of class 2 fills its three slots


def test_a_class_with_more_windows_than_slots_gets_k_means_centroids():
    x, y = shifted_bumps(30, seed=0)
    plain, _, made = nearest.model(x, y, 3, per_class=2, steps=0)
    assert made["prototypes"] == "2 k-means centroids a class, of 30 windows"
    assert plain.get_layer("prototypes").get_weights()[0].shape == (60 * 2, 6)


def test_leave_one_out_training_beats_1nn_on_held_out_windows():
    x, y = shifted_bumps(30, seed=0, noise=0.6)
    test_x, test_y = shifted_bumps(300, seed=2, noise=0.6)
    baseline = (one_nn(x, y, test_x) == test_y).mean()
    plain, _, made = nearest.model(x, y, 3, per_class=10, seed=0)
    model = parse_model(to_int8_tflite(arch_lib.with_softmax(plain), x))
    trained = evaluate(model, test_x, test_y).accuracy  # int8, on TFLM
    assert made["training_steps"] == nearest.STEPS and len(made[f"loss_every_{nearest.LOG_EVERY}_steps"]) == nearest.STEPS // nearest.LOG_EVERY
    assert trained > baseline + 0.05, (trained, baseline)
