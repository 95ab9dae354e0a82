/* tinydeploy C engine kernels. See td_kernels.h for the contract: results
 * identical to TFLite's reference int8 kernels. The arithmetic and the
 * convolutions are in td_kernels_inline.h. */
#include "td_kernels.h"

#include <string.h>

#include "td_kernels_inline.h"

int32_t td_multiply_by_quantized_multiplier(int32_t x, const td_requant *rq) { return requant(x, rq); }

int32_t td_requant_fast_offset(int32_t x, const td_requant *rq, int32_t neg) {
  return requant_fast_offset(x, rq, neg);
}

void td_conv_2d(const td_conv *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  td_conv_2d_inline(p, input, output, scratch);
}

void td_depthwise_conv_2d(const td_depthwise *p, const int8_t *input, int8_t *output) {
  td_depthwise_conv_2d_inline(p, input, output);
}

/* ---- FULLY_CONNECTED ---------------------------------------------------- */

void td_fully_connected_s8(const td_fully_connected *p, const int8_t *input, int8_t *output) {
  td_fully_connected_s8_inline(p, input, output);
}

/* ---- pooling ------------------------------------------------------------ */

void td_max_pool_2d(const td_pool *p, const int8_t *input, int8_t *output) { td_max_pool_2d_inline(p, input, output); }

void td_average_pool_2d(const td_pool *p, const int8_t *input, int8_t *output) {
  int32_t oy, ox, c, fy, fx;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t fy_lo, fy_hi;
    valid_taps(iy0, 1, p->f_h, p->in_h, &fy_lo, &fy_hi);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int32_t fx_lo, fx_hi, count;
      valid_taps(ix0, 1, p->f_w, p->in_w, &fx_lo, &fx_hi);
      count = (fy_hi - fy_lo) * (fx_hi - fx_lo);
      for (c = 0; c < p->channels; ++c) {
        int32_t sum = 0;
        for (fy = fy_lo; fy < fy_hi; ++fy) {
          const int8_t *x = input + ((iy0 + fy) * p->in_w + ix0) * p->channels + c;
          for (fx = fx_lo; fx < fx_hi; ++fx) sum += x[fx * p->channels];
        }
        if (count == 0) continue; /* TFLite skips such outputs too */
        sum = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
        TD_STORE(output, (oy * p->out_w + ox) * p->channels + c, clamp8(sum, p->act_min, p->act_max));
      }
    }
  }
}

/* ---- MEAN --------------------------------------------------------------- */

void td_mean_s8(const td_mean *p, const int8_t *input, int8_t *output) {
  const int32_t n = p->h * p->w;
  int32_t c, i;
  for (c = 0; c < p->channels; ++c) {
    int32_t sum = 0;
    const int8_t *x = input + c;
    for (i = 0; i < n; ++i) sum += x[i * p->channels];
    sum -= p->in_zero_point * n;
    sum = requant(sum, &p->rq);
    output[c] = clamp8(sum + p->out_zero_point, -128, 127);
  }
}

/* ---- ADD ---------------------------------------------------------------- */

void td_add_s8(const td_add *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
  td_add_s8_inline(p, input1, input2, output);
}

/* ---- PAD, RESHAPE, QUANTIZE --------------------------------------------- */

void td_pad_s8(const td_pad *p, const int8_t *input, int8_t *output) {
  const int32_t *o = p->out_dims, *in = p->in_dims, *b = p->before;
  int32_t i0, i1, i2;
  const int32_t total = o[0] * o[1] * o[2] * o[3];
  memset(output, p->value, (size_t)total);
  for (i0 = 0; i0 < in[0]; ++i0) {
    for (i1 = 0; i1 < in[1]; ++i1) {
      for (i2 = 0; i2 < in[2]; ++i2) {
        const int8_t *src = input + ((i0 * in[1] + i1) * in[2] + i2) * in[3];
        int8_t *dst = output + (((i0 + b[0]) * o[1] + i1 + b[1]) * o[2] + i2 + b[2]) * o[3] + b[3];
        memcpy(dst, src, (size_t)in[3]);
      }
    }
  }
}

void td_copy(const int8_t *input, int8_t *output, int32_t size) {
  int32_t i;
  if (output > input && output < input + size) { /* overlapping, backwards */
    for (i = size - 1; i >= 0; --i) output[i] = input[i];
    return;
  }
  if ((((uintptr_t)input | (uintptr_t)output) & 3) == 0) { /* word at a time when both are aligned */
    const int32_t words = size >> 2;
    const int32_t *src = (const int32_t *)(const void *)input;
    int32_t *dst = (int32_t *)(void *)output;
    for (i = 0; i < words; ++i) dst[i] = src[i];
    i = words << 2;
  } else {
    i = 0;
  }
  for (; i < size; ++i) output[i] = input[i];
}

void td_requantize_s8(const td_requantize *p, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < p->size; ++i)
    output[i] = clamp8(requant(input[i] - p->in_zero_point, &p->rq) + p->out_zero_point, -128, 127);
}

/* ---- SOFTMAX: TFLite's reference int8 softmax, gemmlowp fixed point ------
 * (the exps come from tinydeploy's copy of exp_on_negative_values) */

/* FixedPoint raw values: a Qm.n number is an int32 with n = 31 - m fraction bits. */
static int32_t fp_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static int32_t fp_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* SaturatingRoundingMultiplyByPOT<exponent> */
static int32_t fp_mul_pot(int32_t x, int exponent) {
  if (exponent > 0) {
    const int32_t threshold = (int32_t)(((uint32_t)1 << (31 - exponent)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
  }
  if (exponent < 0) return rounding_divide_by_pot(x, -exponent);
  return x;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31, by Newton-Raphson in Q2.29. */
static int32_t one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t c48_17 = 1515870810, cneg32_17 = -1010580540; /* 48/17, -32/17 in Q2.29 */
  int32_t x = fp_add(c48_17, srdhm(half_denominator, cneg32_17));
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = srdhm(half_denominator, x);
    const int32_t one_minus = fp_sub(1 << 29, half_denominator_times_x);
    x = fp_add(x, fp_mul_pot(srdhm(x, one_minus), 2));
  }
  return fp_mul_pot(x, 1);
}

static int count_leading_zeros(uint32_t x) {
  int n = 0;
  if (x == 0) return 32;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
}

void td_softmax_s8(const td_softmax *p, const int8_t *input, int8_t *output) {
  int32_t r, c;
  for (r = 0; r < p->rows; ++r) {
    const int8_t *x = input + r * p->depth;
    int8_t *out = output + r * p->depth;
    int32_t max_in_row = -128, sum_of_exps = 0, headroom, shift;
    int32_t shifted_scale;
    for (c = 0; c < p->depth; ++c)
      if (x[c] > max_in_row) max_in_row = x[c];
    for (c = 0; c < p->depth; ++c) sum_of_exps = fp_add(sum_of_exps, fp_mul_pot(p->exps[max_in_row - x[c]], -12));
    headroom = count_leading_zeros((uint32_t)sum_of_exps);
    shift = (12 - headroom) + 31 - 8; /* num_bits_over_unit + 31 - 8 */
    shifted_scale = one_over_one_plus_x(
        (int32_t)(((uint32_t)sum_of_exps << headroom) - ((uint32_t)1 << 31)));
    for (c = 0; c < p->depth; ++c) {
      const int32_t unsat = rounding_divide_by_pot(srdhm(shifted_scale, p->exps[max_in_row - x[c]]), shift);
      out[c] = clamp8(unsat - 128, -128, 127);
    }
  }
}
