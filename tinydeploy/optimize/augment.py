"""Augmentation of small training sets: every sample is changed a little each epoch.

Series (T, C): a time shift of up to 10% of the window, amplitude x N(1, 0.1) per channel and
jitter of 5% of each channel's std. Images (H, W, C): shifts of up to two pixels, edge padded.
bench/small_data.py measures what it does.
"""

from __future__ import annotations

import numpy as np


def note(input_shape: tuple[int, ...], max_shift: float = 0.1) -> str:
    """What augmentation does to samples of this shape, in words (for reports)."""
    if len(input_shape) == 2:
        return (f"series: time shift up to {max_shift:.0%} of the window, amplitude x N(1, 0.1) per channel, "
                "jitter 5% of std")
    return "images: shifts of up to 2 pixels (edge padded)"


def augmented(tf, x: np.ndarray, labels, batch: int, seed: int, max_shift: float = 0.1):
    """The samples as a tf.data pipeline of (augmented sample batch, labels batch), reshuffled
    and augmented anew each epoch. labels: an array, or a tuple of arrays (passed through);
    max_shift: a series' largest time shift, as a share of its window."""
    x = np.asarray(x, np.float32)
    series = x.ndim == 3
    std = tf.constant(x.reshape(-1, x.shape[-1]).std(0) + 1e-6, tf.float32)

    def augment(sample, label):
        if series:
            steps = sample.shape[0]
            limit = max(1, int(steps * max_shift))
            shift = tf.random.uniform([], -limit, limit + 1, tf.int32)
            sample = tf.roll(sample, shift, axis=0)
            sample = sample * tf.random.normal([1, sample.shape[1]], 1.0, 0.1)
            sample = sample + tf.random.normal(tf.shape(sample), 0.0, 1.0) * 0.05 * std
        else:
            h, w = sample.shape[0], sample.shape[1]
            padded = tf.pad(sample, [[2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
            sample = tf.image.random_crop(padded, [h, w, sample.shape[2]])
        return sample, label

    data = tf.data.Dataset.from_tensor_slices((x, labels))
    return (data.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .map(augment, num_parallel_calls=1, deterministic=True).batch(batch))
