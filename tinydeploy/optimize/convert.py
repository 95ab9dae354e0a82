"""Keras model -> full-int8 TFLite flatbuffer."""

from __future__ import annotations

import numpy as np

from tinydeploy.runtime import _tf


def to_int8_tflite(keras_model, representative: np.ndarray, samples: int = 200, seed: int = 0,
                   static_batch: bool = True, per_tensor_dense: bool = False) -> bytes:
    """Convert with full integer quantization: int8 weights, activations, input and output.

    Args:
        keras_model: a tf_keras model (plain or tfmot quantization-aware).
        representative: float input samples (N, ...) drawn from the training data,
            used to calibrate activation ranges.
        samples: how many of them to use at most.
        seed: which ones are drawn.
        static_batch: convert for a batch of 1, as the board runs it (False: an unknown batch,
            as a converter given only the Keras model produces; tests use it for such models).
        per_tensor_dense: quantize dense (FULLY_CONNECTED) weights with one scale per tensor, not
            per output channel: kernels with one multiplier per layer (the Arduino library's
            CMSIS-NN FULLY_CONNECTED) then compute the model exactly.

    Returns:
        The .tflite bytes.
    """
    tf = _tf.tensorflow()
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(representative))[:samples]
    calibration = np.asarray(representative, dtype=np.float32)[picks]

    def dataset():
        for x in calibration:
            yield [x[None, ...]]

    converter = (_batch_one_converter(keras_model) if static_batch
                 else tf.lite.TFLiteConverter.from_keras_model(keras_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if per_tensor_dense:  # the converter's own switch (TensorFlow >= 2.16)
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    return _quietly(converter.convert)


def _batch_one_converter(keras_model):
    """A converter for the model with a static batch of 1, as the board runs it. With the batch
    unknown, every reshape would compute its shape at run time (SHAPE, STRIDED_SLICE, PACK),
    costing time and arena on TFLM and refused by the C engine."""
    tf = _tf.tensorflow()
    spec = tf.TensorSpec([1, *keras_model.input_shape[1:]], tf.float32)
    function = tf.function(lambda x: keras_model(x, training=False), input_signature=[spec])
    return tf.lite.TFLiteConverter.from_concrete_functions([function.get_concrete_function()], keras_model)


def _quietly(convert) -> bytes:
    """Run a conversion without the converter's native log lines and calibration warnings."""
    import warnings

    from tinydeploy.core._native import captured_native_output
    with warnings.catch_warnings(), captured_native_output():
        warnings.simplefilter("ignore")
        return convert()


def to_float_tflite(keras_model) -> bytes:
    """Convert without quantization (a float32 model, for comparison only)."""
    tf = _tf.tensorflow()
    return _quietly(tf.lite.TFLiteConverter.from_keras_model(keras_model).convert)
