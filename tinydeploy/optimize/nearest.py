"""The nearest stage: a nearest-prototype classifier, trained so that no window needs itself.

A 1-nearest-neighbour classifier of the training windows is the classical baseline for small
time-series sets, and hard to beat with a CNN on a few dozen windows. Here it is an int8 model
both engines run (architectures._nearest): one dense layer scores the input against stored
prototypes of each class, and a max pool keeps each class's best.

The prototypes start as the training windows, in the normalized input space (or, where a
class has more windows than the flash allows, as k-means centroids of them). They are then
trained as learning vector quantization is: cross-entropy on the classes' nearest
prototypes, on augmented windows, each window masked from its own copies, so that the
loss is leave-one-out and a window is pulled towards its class's other prototypes and away
from the others'. In float, on eleven small series sets, training beat the untrained
prototypes (1-NN in the same space) on ten and lost 0.2 points of test accuracy on the
eleventh; bench/small_data.py prints the deployed int8 figures against 1-NN.
"""

from __future__ import annotations

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.optimize import architectures as arch_lib
from tinydeploy.optimize import augment

# Optimizer steps of prototype training (each costs one batch x prototypes product), with a
# learning rate that decays to 0 on a cosine. int8 test accuracy on TFLM, mean of 2-3 seeds,
# 400 steps at a constant rate -> 2000 steps decayed: ItalyPowerDemand 0.950 -> 0.958,
# ArrowHead 0.831 -> 0.836, GunPoint 0.978 -> 0.987, PickupGestureWiimoteZ 0.68 -> 0.70,
# BasicMotions 0.68 -> 0.94, JapaneseVowels 0.980 -> 0.981, OSULeaf 0.572 -> 0.574. Stopped at
# 400 steps the prototypes were still moving (ItalyPowerDemand was below its untrained 0.955).
STEPS = 2000
LEARNING_RATE = 3e-3  # at the start
LOG_EVERY = 200  # steps between the training losses the report keeps
BATCH = 32
# Time shifts of up to 5% of the window while training prototypes: on ArrowHead, GunPoint and
# PickupGestureWiimoteZ (two seeds each) int8 test accuracy was 0-5 points higher than with
# the 10% the CNN stages use; a prototype is a template, and large shifts blur it.
MAX_SHIFT = 0.05
SHARPNESS = 10.0  # logits = SHARPNESS x a learned factor x (-squared distance / input size)


def init_prototypes(z: np.ndarray, y: np.ndarray, n_classes: int, per_class: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """(prototypes (per_class, n_classes, D), which prototypes are copies of each window
    (windows x prototypes, 0 or 1), how they were picked). A class with at most per_class
    windows keeps each as a prototype (repeated to fill its slots); a larger one gets
    per_class k-means centroids of its windows, which copy none."""
    protos = np.zeros((per_class, n_classes, z.shape[1]), np.float32)
    copies = np.zeros((len(z), per_class * n_classes), np.float32)
    reduced = False
    for c in range(n_classes):
        members = np.flatnonzero(y == c)
        if len(members) > per_class:
            protos[:, c], reduced = _kmeans(z[members], per_class, rng), True
            continue
        for i in range(per_class):  # unit i * n_classes + c is class c's i-th prototype
            window = members[i % len(members)]
            protos[i, c] = z[window]
            copies[window, i * n_classes + c] = 1
    how = (f"{per_class} k-means centroids a class, of {len(z)} windows" if reduced
           else f"every one of {len(z)} windows")
    return protos, copies, how


def _kmeans(rows: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """k centroids of rows (Lloyd's algorithm from k distinct rows); an emptied cluster keeps its centroid."""
    centroids = rows[rng.choice(len(rows), k, replace=False)].copy()
    for _ in range(iterations):
        nearest = ((rows[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
        for j in range(k):
            if (nearest == j).any():
                centroids[j] = rows[nearest == j].mean(axis=0)
    return centroids


def train_prototypes(protos: np.ndarray, x: np.ndarray, y: np.ndarray, copies: np.ndarray,
                     norm: arch_lib.Normalization, seed: int, steps: int = STEPS) -> tuple[np.ndarray, list]:
    """The prototypes after `steps` of leave-one-out training on augmented windows (module
    docstring), and the loss every LOG_EVERY steps."""
    tf = _tf.tensorflow()
    tf.random.set_seed(seed)  # before the augmentation pipeline is made: its random ops take their seeds then
    per_class, n_classes, size = protos.shape
    mean, std = _flat_norm(norm, x.shape[1:])
    p = tf.Variable(protos.reshape(-1, size))
    sharpness = tf.Variable(1.0)
    owner = tf.one_hot(np.tile(np.arange(n_classes), per_class), n_classes)  # (P, classes)
    optimizer = tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(LEARNING_RATE, steps))
    copies = tf.constant(copies)
    windows = augment.augmented(tf, x, (y.astype(np.int32), np.arange(len(x), dtype=np.int32)), min(BATCH, len(x)),
                                seed, MAX_SHIFT)

    @tf.function
    def step(batch, labels, index):
        z = (tf.reshape(batch, [tf.shape(batch)[0], -1]) - mean) / std
        with tf.GradientTape() as tape:
            d = (tf.reduce_sum(z * z, 1, keepdims=True) - 2 * z @ tf.transpose(p)
                 + tf.reduce_sum(p * p, 1)[None]) / size
            d += 1e9 * tf.gather(copies, index)  # a window never matches a copy of itself
            scores = tf.reduce_max(-d[:, :, None] - 1e9 * (1 - owner[None]), axis=1)  # each class's nearest
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
                labels, SHARPNESS * sharpness * scores, from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, [p, sharpness]), [p, sharpness]))
        return loss

    losses, done = [], 0
    while done < steps:
        for batch, (labels, index) in windows:
            loss = step(batch, labels, index)
            done += 1
            if done % LOG_EVERY == 0:
                losses.append(round(float(loss), 5))
            if done >= steps:
                break
    return p.numpy().reshape(protos.shape), losses


def _flat_norm(norm: arch_lib.Normalization, shape) -> tuple[np.ndarray, np.ndarray]:
    """The normalization's mean and std for each element of a flattened input (channel last)."""
    return (np.broadcast_to(np.asarray(norm.mean, np.float32), shape).reshape(-1),
            np.broadcast_to(np.asarray(norm.std, np.float32), shape).reshape(-1))


def dense_weights(protos: np.ndarray, norm: arch_lib.Normalization, shape) -> tuple[np.ndarray, np.ndarray]:
    """The dense layer that scores raw inputs against prototypes of the normalized space z:
    2 z.p - |p|^2 = |z|^2 - |z - p|^2, largest for the nearest prototype (|z|^2 is the same
    for all), with the normalization folded in."""
    mean, std = _flat_norm(norm, shape)
    p = protos.reshape(-1, protos.shape[-1])
    kernel = (2 * p / std).T
    bias = -(p ** 2).sum(axis=1) - 2 * (p * mean / std).sum(axis=1)
    return kernel.astype(np.float32), bias.astype(np.float32)


def leave_one_out(x: np.ndarray, y: np.ndarray) -> float:
    """Leave-one-out accuracy of the 1-NN classifier of the windows x, in the normalized space
    model(x, ...) starts from: each window labelled by its nearest other window. (float)"""
    norm = arch_lib.Normalization.of(x)
    mean, std = _flat_norm(norm, x.shape[1:])
    z = ((x.reshape(len(x), -1) - mean) / std).astype(np.float64)
    squared = (z * z).sum(axis=1)
    d = squared[:, None] - 2 * z @ z.T + squared[None, :]
    np.fill_diagonal(d, np.inf)
    return float((y[d.argmin(axis=1)] == y).mean())


def model(x: np.ndarray, y: np.ndarray, n_classes: int, per_class: int, seed: int = 0, steps: int = STEPS):
    """A trained plain (raw-input, logits) nearest-prototype classifier of labelled windows:
    (the Keras model, its Arch, what was done: prototypes, training losses)."""
    norm = arch_lib.Normalization.of(x)
    mean, std = _flat_norm(norm, x.shape[1:])
    z = (x.reshape(len(x), -1) - mean) / std
    protos, copies, how = init_prototypes(z, y, n_classes, per_class, np.random.default_rng(seed))
    trained, losses = train_prototypes(protos, x, y, copies, norm, seed, steps) if steps else (protos, [])
    arch = arch_lib.Arch((), name="nearest", prototypes=per_class)
    plain = arch_lib.plain_model(arch, x.shape[1:], n_classes)
    plain.get_layer("prototypes").set_weights(list(dense_weights(trained, norm, x.shape[1:])))
    return plain, arch, {"prototypes": how, "training_steps": steps, f"loss_every_{LOG_EVERY}_steps": losses}
