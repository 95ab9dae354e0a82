"""Models built at test time with TensorFlow: no model binaries are committed."""

from pathlib import Path

import numpy as np

from tinydeploy import _tf
from tinydeploy.convert import to_float_tflite, to_int8_tflite

INPUT_SHAPE = (32, 32, 1)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def small_cnn(seed: int = 0):
    """Conv2D(8,3x3) -> maxpool -> depthwise 3x3 -> 1x1 conv -> GAP -> dense(10)."""
    keras = _tf.keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    return keras.Sequential([
        layers.Input(INPUT_SHAPE),
        layers.Conv2D(8, 3, activation="relu"),
        layers.MaxPooling2D(),
        layers.DepthwiseConv2D(3, activation="relu"),
        layers.Conv2D(16, 1, activation="relu"),
        layers.GlobalAveragePooling2D(),
        layers.Dense(10, activation="softmax"),
    ])


def representative(n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *INPUT_SHAPE), dtype=np.float32)


def int8_cnn() -> bytes:
    return to_int8_tflite(small_cnn(), representative())


def float_cnn() -> bytes:
    return to_float_tflite(small_cnn())


def unsupported_ops() -> bytes:
    tf = _tf.tensorflow()

    class TwoOps(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 16], tf.float32)])
        def __call__(self, x):
            top = tf.math.top_k(x, 3).values
            return tf.reduce_prod(top, axis=1, keepdims=True)

    module = TwoOps()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
    return converter.convert()
