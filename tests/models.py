"""Models built at test time with TensorFlow: no model binaries are committed."""

from pathlib import Path

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.optimize.convert import to_float_tflite, to_int8_tflite
from tinydeploy.optimize.quantization import pack_int4

INPUT_SHAPE = (32, 32, 1)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def small_cnn(seed: int = 0):
    """Conv2D(8,3x3) -> maxpool -> depthwise 3x3 -> 1x1 conv -> GAP -> dense(10). Its layer names
    are the same whatever the process built before (tests name its tensors)."""
    keras = _tf.keras()
    keras.backend.clear_session()
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


def int8_cnn(per_tensor_dense: bool = False) -> bytes:
    return to_int8_tflite(small_cnn(), representative(), per_tensor_dense=per_tensor_dense)


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


def kernel_zoo() -> dict[str, bytes]:
    """Small int8 models that between them use every C-engine kernel across strides,
    paddings, kernel sizes, dilations and channel multipliers (random weights)."""
    keras = _tf.keras()
    layers = keras.layers
    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)

    def build(shape, body):
        inputs = layers.Input(shape)
        return keras.Model(inputs, body(inputs))

    def convs(x):  # 16x16x3
        a = layers.Conv2D(6, 3, padding="same", activation="relu")(x)           # out_c not a multiple of 4
        b = layers.Conv2D(8, 4, strides=2, padding="valid", activation="relu6")(a)  # 7x7
        c = layers.Conv2D(8, 3, strides=2, padding="valid")(a)                   # 7x7, no activation
        c = layers.Conv2D(8, 1)(c)                                               # pointwise, odd pixel count
        joined = layers.Conv2D(8, 1, activation="relu")(layers.Add()([c, b]))
        d = layers.Conv2D(4, 5, strides=2, padding="same", activation="relu")(a)  # 8x8
        d = layers.MaxPooling2D(3, strides=2, padding="same")(d)                  # 4x4
        side = layers.Dense(12)(layers.Flatten()(layers.AveragePooling2D(2)(d)))
        pooled = layers.Dense(12)(layers.GlobalAveragePooling2D()(joined))
        return layers.Dense(10, activation="softmax")(layers.Add()([pooled, side]))

    def depthwise(x):  # 19x19x4
        a = layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        b = layers.DepthwiseConv2D(3, strides=2, depth_multiplier=2, padding="same", activation="relu6")(a)
        c = layers.DepthwiseConv2D(5, padding="valid")(b)
        d = layers.DepthwiseConv2D(4, strides=2, padding="same", activation="relu")(c)
        e = layers.DepthwiseConv2D(2, strides=1, padding="valid", depth_multiplier=3)(d)
        return layers.GlobalAveragePooling2D(keepdims=True)(e)

    def pools_pads(x):  # 12x13x2
        a = layers.ZeroPadding2D(((1, 2), (0, 3)))(x)
        a = layers.Conv2D(5, 3, activation="relu")(a)
        a = layers.DepthwiseConv2D(3, padding="same", activation="relu")(a)  # 5 channels: 4 + 1; pairs, borders
        b = layers.AveragePooling2D(3, strides=2, padding="same")(a)
        c = layers.AveragePooling2D(2, padding="valid")(a)
        d = layers.MaxPooling2D(2, strides=1, padding="valid")(b)
        e = layers.Flatten()(d)
        f = layers.Flatten()(c)
        g = layers.DepthwiseConv2D(3, dilation_rate=2, padding="same")(a)  # dilated windows, four pixels at a time
        g = layers.Flatten()(layers.DepthwiseConv2D(3, strides=(1, 2), activation="relu")(g))  # four, two apart
        return layers.Dense(7)(layers.Add()([layers.Dense(16)(e), layers.Dense(16)(f), layers.Dense(16)(g)]))

    def series(x):  # (T, C) sensor windows: Conv1D becomes CONV_2D on a 1-row image
        a = layers.Conv1D(8, 5, strides=2, padding="same", activation="relu")(x)
        b = layers.SeparableConv1D(12, 3, padding="same", activation="relu")(a)
        return layers.Dense(4, activation="softmax")(layers.GlobalAveragePooling1D()(b))

    def shape_arithmetic(x):  # (T, C) windows reshaped as the pipeline's series models are
        a = layers.Reshape((12, 1, 3))(x)
        a = layers.Conv2D(4, (3, 1), activation="relu")(a)
        return layers.Dense(5)(layers.Reshape((40,))(a))

    def columns(x):  # (T, C) windows as the pipeline's series models run them: T rows, one column
        a = layers.Reshape((48, 1, 6))(x)
        a = layers.DepthwiseConv2D((3, 1), padding="same", activation="relu")(a)  # 6 channels: 4 + 2; row pairs
        a = layers.DepthwiseConv2D((5, 1), strides=(2, 1), padding="valid")(a)
        a = layers.DepthwiseConv2D((3, 1), dilation_rate=(2, 1), padding="same", activation="relu6")(a)
        a = layers.Conv2D(7, 1, activation="relu")(a)
        a = layers.DepthwiseConv2D((3, 1), padding="same")(a)  # 7 channels: 4 + 3
        a = layers.Conv2D(5, (3, 1), padding="same", activation="relu")(a)  # rows in fours and in pairs; 4 + 1
        a = layers.Conv2D(6, (3, 1), strides=(2, 1))(a)  # four rows two apart
        a = layers.DepthwiseConv2D((3, 1), dilation_rate=(2, 1), padding="same")(a)  # 10 rows: unrolled whole
        return layers.Dense(3)(layers.GlobalAveragePooling2D()(a))

    zoo = {"convs": ((16, 16, 3), convs), "depthwise": ((19, 19, 4), depthwise),
           "pools_pads": ((12, 13, 2), pools_pads), "series": ((40, 3), series),
           "shape_arithmetic": ((12, 3), shape_arithmetic), "columns": ((48, 6), columns)}
    out, layer_names = {}, {}
    for name, (shape, body) in zoo.items():
        model = build(shape, body)
        layer_names[name] = [layer.name for layer in model.layers]
        for layer in model.layers:  # spread the weights so that every bit of the arithmetic matters
            weights = layer.get_weights()
            if weights:
                layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in weights])
        data = rng.normal(0, 1, (64, *shape)).astype(np.float32)
        # These two as a converter given only the Keras model makes them (unknown batch): Conv1D
        # then keeps its EXPAND_DIMS, a view the C engine must handle, and each Reshape computes
        # its target at run time (SHAPE, STRIDED_SLICE, PACK), which the C engine folds.
        out[name] = to_int8_tflite(model, data, static_batch=name not in ("series", "shape_arithmetic"))
    out["requantized"] = with_requantized_output(out["depthwise"])  # + QUANTIZE int8 -> int8
    # Every convolution and depthwise layer's weights as packed int4, as the mixed stage stores them.
    out["convs_int4"] = pack_int4(out["convs"], layer_names["convs"])[0]
    out["columns_int4"] = pack_int4(out["columns"], layer_names["columns"])[0]
    return out


def with_requantized_output(tflite_bytes: bytes, scale_factor: float = 1.7, zero_point: int = 9) -> bytes:
    """The model with a QUANTIZE (int8 to int8) op appended: its output requantized to another
    scale and zero point, as the converter does where two consumers need different scales."""
    import copy

    from flatbuffers import Builder
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb
    model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    graph = model_t.subgraphs[0]
    old_output = graph.outputs[0]
    source = graph.tensors[old_output]
    tensor = copy.deepcopy(source)
    tensor.name = b"requantized_output"
    tensor.quantization.scale = [source.quantization.scale[0] * scale_factor]
    tensor.quantization.zeroPoint = [zero_point]
    model_t.buffers.append(schema_fb.BufferT())
    tensor.buffer = len(model_t.buffers) - 1
    graph.tensors.append(tensor)
    code = schema_fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema_fb.BuiltinOperator.QUANTIZE
    code.version = 2
    model_t.operatorCodes.append(code)
    op = schema_fb.OperatorT()
    op.opcodeIndex = len(model_t.operatorCodes) - 1
    op.inputs = [old_output]
    op.outputs = [len(graph.tensors) - 1]
    graph.operators.append(op)
    graph.outputs = [len(graph.tensors) - 1]
    builder = Builder(len(tflite_bytes) + 1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def random_cnn(seed: int) -> bytes:
    """A small random int8 CNN (seeded: sizes, strides, paddings, depth multiplier, weights) with
    every kernel that has variants: SAME convolutions (border windows), a depthwise layer, pooling,
    MEAN, a dense layer and SOFTMAX."""
    keras = _tf.keras()
    layers = keras.layers
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(6, 13)), int(rng.integers(6, 13)), int(rng.integers(1, 4)))
    inputs = layers.Input(shape)
    x = layers.Conv2D(int(rng.integers(3, 9)), int(rng.choice([2, 3, 5])), strides=int(rng.integers(1, 3)),
                      padding="same", activation="relu")(inputs)
    x = layers.DepthwiseConv2D(3, padding=str(rng.choice(["same", "valid"])) if min(x.shape[1:3]) >= 4 else "same",
                               depth_multiplier=int(rng.integers(1, 4)), activation="relu6")(x)
    if min(x.shape[1:3]) >= 2:
        x = layers.MaxPooling2D(2, strides=1, padding="same")(x)
    x = layers.Conv2D(int(rng.integers(3, 9)), 3, padding="same")(x)
    x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, layers.Dense(int(rng.integers(2, 7)), activation="softmax")(x))
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in weights])
    return to_int8_tflite(model, rng.normal(0, 1, (32, *shape)).astype(np.float32))
