"""TFLite's quantization arithmetic, reproduced so that the C engine is bit-identical to
TFLite's reference kernels: QuantizeMultiplier (frexp, round half away from zero), the
requantization fields the kernels take, and CalculateActivationRangeQuantized."""

from __future__ import annotations

import math

import numpy as np

from tinydeploy.model import Model


class Unsupported(Exception):
    """One operator (or variant) the C engine has no kernel for."""


def tflite_round(value: float) -> int:
    """TfLiteRound / std::round: half away from zero."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: real = multiplier * 2^(shift - 31), multiplier in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = tflite_round(q * (1 << 31))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return (1 << 31) - 1, 30
    return q_fixed, shift


def requant_fields(multiplier: int, shift: int, offset: int = 0) -> list[int]:
    """A td_requant initializer: 2 * multiplier, the fast path's 2^right + (offset << (right + 1))
    + 1, left, right and the fast path's shift right + 1 (td_kernels.h)."""
    left, right = max(shift, 0), max(-shift, 0)
    if not right:
        return [2 * multiplier, 0, left, 0, 0]
    return [2 * multiplier, (1 << right) + (offset << (right + 1)) + 1, left, right, right + 1]


def quant_of(model: Model, index: int) -> tuple[float, int]:
    q = model.tensors[index].quantization
    if q is None:
        raise Unsupported(f"tensor '{model.tensors[index].name}' is not quantized")
    return q.scales[0], q.zero_points[0] if q.zero_points else 0


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 (f / scale in float32, as TFLite computes it)."""
    def quantize(f: float) -> int:
        return zero_point + tflite_round(float(np.float32(f) / np.float32(scale)))
    if activation == "NONE":
        return -128, 127
    if activation == "RELU":
        return max(-128, quantize(0.0)), 127
    if activation == "RELU6":
        return max(-128, quantize(0.0)), min(127, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(-128, quantize(-1.0)), min(127, quantize(1.0))
    raise Unsupported(f"fused activation {activation}")
