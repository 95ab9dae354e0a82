"""TFLite's quantization arithmetic, reproduced so that the C engine is bit-identical to
TFLite's reference kernels: QuantizeMultiplier (frexp, round half away from zero), the
requantization fields the kernels take, and CalculateActivationRangeQuantized."""

from __future__ import annotations

import math

import numpy as np

from tinydeploy.core.model import Model


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
    """A td_requant initializer: the multiplier, the fast path's 2^right + (offset << (right + 1))
    + 1, left, right and the fast path's shift right + 1 (td_kernels.h)."""
    left, right = max(shift, 0), max(-shift, 0)
    if not right:
        return [multiplier, 0, left, 0, 0]
    return [multiplier, (1 << right) + (offset << (right + 1)) + 1, left, right, right + 1]


def single_rounding_fields(multiplier: int, shift: int, offset: int) -> list[int]:
    """A td_requant initializer for TFLite's per-channel fully connected kernel, which rounds
    once: (acc * multiplier + 2^(s-1)) >> s with s = 31 - shift in `right`. Where s >= 32 the
    fast path's fields too: with r = s - 31 that is (h + 2^r + (offset << (r + 1))) >> (r + 1),
    h the high word of 4 acc times the multiplier (see requant_fast_offset(); no correction)."""
    s = 31 - shift
    if s < 32:
        return [multiplier, 0, 0, s, 0]
    r = s - 31
    return [multiplier, (1 << r) + (offset << (r + 1)), 0, s, r + 1]


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


# ---- gemmlowp fixed point, as TFLite's reference int8 softmax computes it ----

_INT32_MAX, _INT32_MIN = 2 ** 31 - 1, -(2 ** 31)


def _wrap(x: int) -> int:
    """x as an int32 (two's complement wrap-around, as gemmlowp's raw additions)."""
    return (x + 2 ** 31) % 2 ** 32 - 2 ** 31


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul: floor((a * b + 2^30) / 2^31), saturated."""
    if a == b == _INT32_MIN:
        return _INT32_MAX
    return (a * b + (1 << 30)) >> 31


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (x * 2^left within int32, as TFLite requires)."""
    left, right = max(shift, 0), max(-shift, 0)
    return rounding_divide_by_pot(srdhm(x * (1 << left), multiplier), right)


def _mul_pot(x: int, exponent: int) -> int:
    """SaturatingRoundingMultiplyByPOT."""
    if exponent > 0:
        threshold = (1 << (31 - exponent)) - 1
        return _INT32_MAX if x > threshold else _INT32_MIN if x < -threshold else x << exponent
    return rounding_divide_by_pot(x, -exponent) if exponent < 0 else x


def _exp_on_interval(a: int) -> int:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (gemmlowp's Taylor series around -1/8)."""
    constant_term, one_third = 1895147668, 715827883  # exp(-1/8) and 1/3 in Q0.31 (gemmlowp)
    x = _wrap(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4_over_4 = _mul_pot(srdhm(x2, x2), -2)
    poly = _mul_pot(_wrap(srdhm(_wrap(x4_over_4 + x3), one_third) + x2), -1)
    return _wrap(constant_term + srdhm(constant_term, _wrap(x + poly)))


def _exp_on_negative_values(a: int) -> int:
    """exp(a) for a <= 0 in Q5.26, the result in Q0.31."""
    # exp(-1/4), exp(-1/2), ..., exp(-16) in Q0.31 (gemmlowp's barrel shifter constants)
    multipliers = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)
    quarter = 1 << 24
    mod_quarter_minus_quarter = _wrap((a & (quarter - 1)) - quarter)
    result = _exp_on_interval(_mul_pot(mod_quarter_minus_quarter, 5))
    remainder = _wrap(mod_quarter_minus_quarter - a)
    for k, multiplier in enumerate(multipliers):
        if remainder & (1 << (24 + k)):
            result = srdhm(result, multiplier)
    return _INT32_MAX if a == 0 else result


def softmax_exps(input_multiplier: int, input_left_shift: int, diff_min: int) -> list[int]:
    """exp(x - max) in Q0.31 for each difference 0, -1, ..., -255 of int8 inputs, as TFLite's
    reference int8 softmax computes it; 0 below diff_min (the reference then outputs -128 and
    leaves the sum alone, which a 0 does too)."""
    return [_exp_on_negative_values(srdhm(-d * (1 << input_left_shift), input_multiplier)) if -d >= diff_min else 0
            for d in range(256)]
