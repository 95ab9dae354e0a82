"""Quantization-aware training with tensorflow-model-optimization, per-layer
weight bit-widths, and packing 4-bit weights into a TFLite model.

Layers at 8 bits use tfmot's default scheme. A layer with fewer bits gets a
custom QuantizeConfig whose weight fake-quantizer reads its bit-width from a
tf.Variable, so a schedule can change it during training (progressive
quantization) and the training graph really follows it.
"""

from __future__ import annotations

import numpy as np

from tinydeploy.runtime import _tf
from tinydeploy.core.errors import BadInput
from tinydeploy.core.model import parse_model

MAC_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")
# Ops whose packed int4 weights the TFLM runtime accepts (it unpacks them into
# an arena scratch buffer). FULLY_CONNECTED is left out: the tflite-micro
# runtime tinydeploy pins rejects an int4 filter with int8 input
# (fully_connected_common.cc: "input->type == kTfLiteInt8 && filter->type != kTfLiteInt4").
INT4_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")

# tf.Variables holding bit-widths, by key. QuantizeConfigs are re-created when
# tfmot clones a model, so they find their variable here by name.
_BIT_VARIABLES: dict = {}


def bits_variable(key: str, bits: int):
    """The (shared) tf.Variable holding a bit-width, created or reset to bits."""
    tf = _tf.tensorflow()
    if key not in _BIT_VARIABLES:
        _BIT_VARIABLES[key] = tf.Variable(float(bits), trainable=False, name=f"bits_{key}")
    _BIT_VARIABLES[key].assign(float(bits))
    return _BIT_VARIABLES[key]


def fake_quantize_numpy(kernel: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Symmetric per-channel quantization to 2^(bits-1)-1 levels each side, as floats."""
    levels = 2 ** (bits - 1) - 1
    reduce = tuple(i for i in range(kernel.ndim) if i != axis % kernel.ndim)
    scale = np.maximum(np.abs(kernel).max(axis=reduce, keepdims=True), 1e-12) / levels
    return (np.clip(np.round(kernel / scale), -levels, levels) * scale).astype(np.float32)


def channel_axis(layer_class: str) -> int:
    # Conv2D (kh, kw, in, out) and Dense (in, out): out is last; depthwise (kh, kw, C, 1): C.
    return 2 if layer_class == "DepthwiseConv2D" else -1


def _tfmot():
    _tf.tensorflow()
    import tensorflow_model_optimization as tfmot
    return tfmot


def _classes():
    """Quantizer and QuantizeConfig classes (defined lazily: they subclass tfmot's)."""
    if "classes" in _BIT_VARIABLES:
        return _BIT_VARIABLES["classes"]
    tf = _tf.tensorflow()
    qk = _tfmot().quantization.keras

    class VariableBitsWeightQuantizer(qk.quantizers.Quantizer):
        """Per-channel symmetric fake quantization; the bit-width is read from a variable."""

        def __init__(self, key: str, axis: int):
            self.key, self.axis = key, axis

        def build(self, tensor_shape, name, layer):
            return {}

        def __call__(self, inputs, training, weights, **kwargs):
            bits = _BIT_VARIABLES[self.key]
            levels = tf.pow(2.0, bits - 1.0) - 1.0
            rank = inputs.shape.rank
            axis = self.axis % rank
            reduce = [i for i in range(rank) if i != axis]
            scale = tf.maximum(tf.reduce_max(tf.abs(inputs), axis=reduce, keepdims=True), 1e-12) / levels
            quantized = tf.clip_by_value(tf.round(inputs / scale), -levels, levels) * scale
            return inputs + tf.stop_gradient(quantized - inputs)  # straight-through estimator

        def get_config(self):
            return {"key": self.key, "axis": self.axis}

    class LowBitWeightsConfig(qk.QuantizeConfig):
        """Weights at the variable's bit-width; the layer's output (after its fused
        activation) is fake-quantized to 8 bits, as TFLite will store it."""

        def __init__(self, key: str, axis: int):
            self.key, self.axis = key, axis
            self.quantizer = VariableBitsWeightQuantizer(key, axis)

        def _attr(self, layer):
            return "depthwise_kernel" if hasattr(layer, "depthwise_kernel") else "kernel"

        def get_weights_and_quantizers(self, layer):
            return [(getattr(layer, self._attr(layer)), self.quantizer)]

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            setattr(layer, self._attr(layer), quantize_weights[0])

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return [qk.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False,
                                                         narrow_range=False)]

        def get_config(self):
            return {"key": self.key, "axis": self.axis}

    _BIT_VARIABLES["classes"] = (VariableBitsWeightQuantizer, LowBitWeightsConfig)
    return _BIT_VARIABLES["classes"]


def quantize_for_training(model, low_bits: dict[str, str]):
    """The tfmot quantization-aware version of a plain (BN-free) Keras model.

    Args:
        model: the plain model.
        low_bits: {layer name: bit-variable key} for layers trained below 8 bits;
            every other layer gets tfmot's default 8-bit scheme.

    Returns:
        The QAT model (shares no weights with ``model``).
    """
    tfmot = _tfmot()
    qk = tfmot.quantization.keras
    keras = _tf.keras()
    quantizer_class, config_class = _classes()

    def annotate(layer):
        if layer.name in low_bits:
            key = low_bits[layer.name]
            return qk.quantize_annotate_layer(layer, config_class(key, channel_axis(type(layer).__name__)))
        return qk.quantize_annotate_layer(layer) if type(layer).__name__ not in ("InputLayer",) else layer

    with qk.quantize_scope({"LowBitWeightsConfig": config_class,
                            "VariableBitsWeightQuantizer": quantizer_class}):
        annotated = keras.models.clone_model(model, clone_function=annotate)
        annotated.set_weights(model.get_weights())
        try:
            return qk.quantize_apply(annotated)
        except (RuntimeError, ValueError) as exc:
            raise _explain_rejection(model, exc) from exc


def _explain_rejection(model, exc: Exception) -> Exception:
    """Turn tfmot's refusal of a layer into an error naming the layer and the fix."""
    text = str(exc)
    rejected = next((layer for layer in model.layers if f"Layer {layer.name}:" in text
                     or f"Layer {layer.name} " in text), None)
    if rejected is None:
        return exc
    previous = None
    for layer in model.layers:
        if layer is rejected:
            break
        previous = layer
    kind = type(rejected).__name__
    if kind == "BatchNormalization" and type(previous).__name__ == "SeparableConv2D":
        fix = ("tfmot does not fold BatchNormalization after SeparableConv2D: express the block as "
               "DepthwiseConv2D -> BatchNormalization -> ReLU -> Conv2D 1x1 -> BatchNormalization -> ReLU")
    else:
        fix = ("tfmot has no quantization scheme for it: replace it with a supported layer "
               "(Conv2D, DepthwiseConv2D, Dense, BatchNormalization after those, ReLU, pooling, Add, Reshape)")
    return BadInput(f"layer '{rejected.name}' ({kind}) cannot be quantization-aware trained: {fix}")


def qat_ready(model):
    """The tfmot QAT model of a user's own Keras model, or a BadInput naming the layer to fix."""
    qk = _tfmot().quantization.keras
    try:
        return qk.quantize_model(model)
    except (RuntimeError, ValueError) as exc:
        raise _explain_rejection(model, exc) from exc


def bake(qat_model, plain_model, bits: dict[str, int]):
    """Copy QAT-trained weights into the plain model, fake-quantizing the low-bit layers.

    Args:
        qat_model: the trained tfmot model.
        plain_model: a plain model of the same architecture (weights are overwritten).
        bits: {layer name: bits} for layers below 8 bits.

    Returns:
        plain_model, whose low-bit kernels now hold values on their bit grid.
    """
    inner = {}
    for layer in qat_model.layers:
        wrapped = getattr(layer, "layer", None)
        if wrapped is not None:
            # The wrapper replaced layer.kernel by its fake-quantized tensor; the
            # trained variables are in the wrapper's weights, named "<layer>/<var>:0".
            prefix = f"{wrapped.name}/"
            inner[wrapped.name] = {v.name[len(prefix):].split(":")[0]: v.numpy()
                                   for v in layer.weights if v.name.startswith(prefix)}
    for layer in plain_model.layers:
        source = inner.get(layer.name)
        if source is None or not layer.get_weights():
            continue
        kernel = source.get("depthwise_kernel", source.get("kernel"))
        bias = source.get("bias")
        if layer.name in bits and bits[layer.name] < 8:
            kernel = fake_quantize_numpy(kernel, bits[layer.name], channel_axis(type(layer).__name__))
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
    return plain_model


def _layer_of(weight_name: str, layer_names) -> str | None:
    for name in layer_names:
        if f"/{name}/" in weight_name or weight_name.endswith(f"/{name}"):
            return name
    return None


def pack_int4(tflite_bytes: bytes, layers: list[str]) -> tuple[bytes, list[str]]:
    """Store the int8 weights of the named layers as packed int4 (two per byte).

    The weights must already lie on a 4-bit grid (see ``bake``): each channel's
    int8 values are mapped onto -7..7 with a scale 127/7 times larger, and the
    int32 bias is rescaled to keep bias_scale = input_scale * weight_scale.
    The first of each pair of values goes in the low nibble.

    Args:
        tflite_bytes: a full-int8 model.
        layers: Keras layer names whose weights to pack.

    Returns:
        (the new model bytes, the layers that were packed).
    """
    from flatbuffers import Builder
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema_fb

    parsed = parse_model(tflite_bytes)
    model_t = schema_fb.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    graph = model_t.subgraphs[0]
    packed = []
    for op in parsed.operators:
        if op.name not in INT4_OPS or len(op.inputs) < 2:
            continue
        weight = graph.tensors[op.inputs[1]]
        layer = _layer_of(parsed.tensors[op.inputs[1]].name, layers)
        if layer is None or weight.type != schema_fb.TensorType.INT8:
            continue
        q = weight.quantization
        values = np.frombuffer(bytes(model_t.buffers[weight.buffer].data), dtype=np.int8).reshape(weight.shape)
        axis = int(q.quantizedDimension)
        reduce = tuple(i for i in range(values.ndim) if i != axis)
        peak = np.maximum(np.abs(values.astype(np.int32)).max(axis=reduce), 1)
        factor = peak / 7.0  # new_scale / old_scale, per channel
        shape = [1] * values.ndim
        shape[axis] = -1
        int4 = np.clip(np.round(values / factor.reshape(shape)), -7, 7).astype(np.int8).reshape(-1)
        if int4.size % 2:
            int4 = np.append(int4, np.int8(0))
        nibbles = (int4.astype(np.uint8) & 0x0F)
        model_t.buffers[weight.buffer].data = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)
        old_scales = np.asarray(q.scale, dtype=np.float64)
        q.scale = (old_scales * factor).astype(np.float32)
        weight.type = schema_fb.TensorType.INT4
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias = graph.tensors[op.inputs[2]]
            raw = np.frombuffer(bytes(model_t.buffers[bias.buffer].data), dtype=np.int32)
            model_t.buffers[bias.buffer].data = np.round(raw / factor).astype(np.int32).view(np.uint8)
            bias.quantization.scale = (np.asarray(bias.quantization.scale, np.float64) * factor).astype(np.float32)
        packed.append(layer)
    if not packed:
        return tflite_bytes, []
    builder = Builder(len(tflite_bytes))
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), packed
