/* tinydeploy C engine kernels. See td_kernels.h for the contract: results
 * identical to TFLite's reference int8 kernels. */
#include "td_kernels.h"

#include <string.h>

/* ---- TFLite / gemmlowp fixed-point arithmetic --------------------------- */

/* SaturatingRoundingDoublingHighMul. For b >= 0 (every requantization
 * multiplier) trunc((a*b + nudge) / 2^31), with nudge = 2^30 when a*b >= 0
 * and 1 - 2^30 otherwise, equals floor((a*b + 2^30) / 2^31). */
static int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT, exactly as TFLite writes it (no intermediate overflow). */
static int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* MultiplyByQuantizedMultiplier for accumulators below 2^30 in magnitude
 * (tinydeploy checks the bound per layer): RoundingDivideByPOT(t, right) is
 * then (t + 2^(right-1) - (t < 0)) >> right. */
static inline int32_t requant(int32_t acc, const td_requant *rq) {
  int32_t t;
  if (rq->left) acc = (int32_t)((uint32_t)acc << rq->left);
  t = (int32_t)(((int64_t)acc * rq->multiplier + ((int64_t)1 << 30)) >> 31);
  return (t + rq->round + ((t >> 31) & rq->negative)) >> rq->right;
}

int32_t td_multiply_by_quantized_multiplier(int32_t x, const td_requant *rq) { return requant(x, rq); }

static inline int8_t clamp8(int32_t v, int32_t lo, int32_t hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return (int8_t)v;
}

/* The kernel taps [*lo, *hi) that fall inside [0, size) for a window starting at origin. */
static void valid_taps(int32_t origin, int32_t dilation, int32_t taps, int32_t size, int32_t *lo, int32_t *hi) {
  int32_t first = 0, last = taps;
  if (origin < 0) first = (-origin + dilation - 1) / dilation;
  if (origin + (taps - 1) * dilation >= size) last = (size - origin + dilation - 1) / dilation;
  if (last < first) last = first;
  *lo = first;
  *hi = last;
}

static void store_group(int8_t *out, int32_t count, const int32_t acc[4], const td_requant *rq, int32_t out_offset,
                        int32_t lo, int32_t hi) {
  int32_t j;
  for (j = 0; j < count; ++j) out[j] = clamp8(requant(acc[j], &rq[j]) + out_offset, lo, hi);
}

/* ---- CONV_2D ------------------------------------------------------------ */

/* 1x1, stride 1, no padding: a matrix product, two pixels and four output
 * channels at a time so that each loaded weight serves two pixels. */
static int32_t conv_pointwise_pairs(const td_conv *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in_c, out_c = p->out_c, pixels = p->out_h * p->out_w;
  const int32_t groups = (out_c + 3) >> 2;
  int32_t px, g, ci;
  for (px = 0; px + 1 < pixels; px += 2) {
    const int8_t *x0 = input + px * in_c;
    const int8_t *x1 = x0 + in_c;
    int8_t *o0 = output + px * out_c;
    int8_t *o1 = o0 + out_c;
    for (g = 0; g < groups; ++g) {
      const int32_t *b = p->bias_full + 4 * g;
      const int8_t *w = p->weights + g * in_c * 4;
      int32_t a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
      int32_t c0 = b[0], c1 = b[1], c2 = b[2], c3 = b[3];
      const int32_t count = out_c - 4 * g < 4 ? out_c - 4 * g : 4;
      int32_t acc[4];
      for (ci = 0; ci < in_c; ++ci) {
        const int32_t v = x0[ci], u = x1[ci];
        const int32_t w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        a0 += v * w0; a1 += v * w1; a2 += v * w2; a3 += v * w3;
        c0 += u * w0; c1 += u * w1; c2 += u * w2; c3 += u * w3;
        w += 4;
      }
      acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
      store_group(o0 + 4 * g, count, acc, p->rq + 4 * g, p->out_offset, p->act_min, p->act_max);
      acc[0] = c0; acc[1] = c1; acc[2] = c2; acc[3] = c3;
      store_group(o1 + 4 * g, count, acc, p->rq + 4 * g, p->out_offset, p->act_min, p->act_max);
    }
  }
  return px;  /* pixels done */
}

static void conv_pixel(const td_conv *p, const int8_t *input, int8_t *out, int32_t oy, int32_t ox) {
  const int32_t in_c = p->in_c, out_c = p->out_c, in_w = p->in_w;
  const int32_t groups = (out_c + 3) >> 2;
  const int32_t group_stride = p->k_h * p->k_w * in_c * 4;
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  int32_t ky_lo, ky_hi, kx_lo, kx_hi, g, ky, kx, ci;
  int full;
  valid_taps(iy0, p->dil_h, p->k_h, p->in_h, &ky_lo, &ky_hi);
  valid_taps(ix0, p->dil_w, p->k_w, in_w, &kx_lo, &kx_hi);
  full = ky_lo == 0 && ky_hi == p->k_h && kx_lo == 0 && kx_hi == p->k_w;
  for (g = 0; g < groups; ++g) {
    const int32_t *b = (full ? p->bias_full : p->bias) + 4 * g;
    const int8_t *wg = p->weights + g * group_stride;
    int32_t a0 = b[0], a1 = b[1], a2 = b[2], a3 = b[3];
    int32_t acc[4];
    const int32_t count = out_c - 4 * g < 4 ? out_c - 4 * g : 4;
    for (ky = ky_lo; ky < ky_hi; ++ky) {
      const int8_t *row = input + ((iy0 + ky * p->dil_h) * in_w + ix0) * in_c;
      for (kx = kx_lo; kx < kx_hi; ++kx) {
        const int8_t *x = row + kx * p->dil_w * in_c;
        const int8_t *w = wg + (ky * p->k_w + kx) * in_c * 4;
        if (full) {
          for (ci = 0; ci < in_c; ++ci) {
            const int32_t v = x[ci];
            a0 += v * w[0]; a1 += v * w[1]; a2 += v * w[2]; a3 += v * w[3];
            w += 4;
          }
        } else {
          for (ci = 0; ci < in_c; ++ci) {
            const int32_t v = x[ci] + p->in_offset;
            a0 += v * w[0]; a1 += v * w[1]; a2 += v * w[2]; a3 += v * w[3];
            w += 4;
          }
        }
      }
    }
    acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
    store_group(out + 4 * g, count, acc, p->rq + 4 * g, p->out_offset, p->act_min, p->act_max);
  }
}

void td_conv_2d(const td_conv *p, const int8_t *input, int8_t *output) {
  int32_t oy, ox, start = 0;
  if (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 &&
      p->pad_left == 0 && p->in_h == p->out_h && p->in_w == p->out_w) {
    start = conv_pointwise_pairs(p, input, output);
  }
  for (oy = 0; oy < p->out_h; ++oy) {
    for (ox = 0; ox < p->out_w; ++ox) {
      if (oy * p->out_w + ox < start) continue;
      conv_pixel(p, input, output + (oy * p->out_w + ox) * p->out_c, oy, ox);
    }
  }
}

/* ---- DEPTHWISE_CONV_2D -------------------------------------------------- */

void td_depthwise_conv_2d(const td_depthwise *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in_c, out_c = p->out_c, in_w = p->in_w, m = p->depth_multiplier;
  int32_t oy, ox, ky, kx, c;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky_lo, ky_hi;
    valid_taps(iy0, p->dil_h, p->k_h, p->in_h, &ky_lo, &ky_hi);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int8_t *out = output + (oy * p->out_w + ox) * out_c;
      int32_t kx_lo, kx_hi, full;
      const int32_t *b;
      valid_taps(ix0, p->dil_w, p->k_w, in_w, &kx_lo, &kx_hi);
      full = ky_lo == 0 && ky_hi == p->k_h && kx_lo == 0 && kx_hi == p->k_w;
      b = full ? p->bias_full : p->bias;
      c = 0;
      if (m == 1) {
        /* Four channels at a time: input and weights are both contiguous in c. */
        const int32_t offset = full ? 0 : p->in_offset;
        for (; c + 3 < out_c; c += 4) {
          int32_t a0 = b[c], a1 = b[c + 1], a2 = b[c + 2], a3 = b[c + 3];
          int32_t acc[4];
          for (ky = ky_lo; ky < ky_hi; ++ky) {
            const int8_t *x = input + ((iy0 + ky * p->dil_h) * in_w + ix0 + kx_lo * p->dil_w) * in_c + c;
            const int8_t *w = p->weights + (ky * p->k_w + kx_lo) * out_c + c;
            for (kx = kx_lo; kx < kx_hi; ++kx) {
              a0 += (x[0] + offset) * w[0];
              a1 += (x[1] + offset) * w[1];
              a2 += (x[2] + offset) * w[2];
              a3 += (x[3] + offset) * w[3];
              x += p->dil_w * in_c;
              w += out_c;
            }
          }
          acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3;
          store_group(out + c, 4, acc, p->rq + c, p->out_offset, p->act_min, p->act_max);
        }
      }
      for (; c < out_c; ++c) {
        const int32_t ic = c / m;
        int32_t acc = p->bias[c];
        for (ky = ky_lo; ky < ky_hi; ++ky) {
          for (kx = kx_lo; kx < kx_hi; ++kx) {
            const int32_t iy = iy0 + ky * p->dil_h, ix = ix0 + kx * p->dil_w;
            acc += (input[(iy * in_w + ix) * in_c + ic] + p->in_offset) * p->weights[(ky * p->k_w + kx) * out_c + c];
          }
        }
        out[c] = clamp8(requant(acc, &p->rq[c]) + p->out_offset, p->act_min, p->act_max);
      }
    }
  }
}

/* ---- FULLY_CONNECTED ---------------------------------------------------- */

void td_fully_connected_s8(const td_fully_connected *p, const int8_t *input, int8_t *output) {
  int32_t b, u, i;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * p->depth;
    for (u = 0; u < p->units; ++u) {
      const int8_t *w = p->weights + u * p->depth;
      int32_t acc = p->bias_full[u];
      for (i = 0; i < p->depth; ++i) acc += x[i] * w[i];
      if (p->single_rounding) {
        const int32_t s = p->rq[u].right;
        acc = (int32_t)(((int64_t)acc * p->rq[u].multiplier + ((int64_t)1 << (s - 1))) >> s);
      } else {
        acc = requant(acc, &p->rq[u]);
      }
      output[b * p->units + u] = clamp8(acc + p->out_offset, p->act_min, p->act_max);
    }
  }
}

/* ---- pooling ------------------------------------------------------------ */

void td_max_pool_2d(const td_pool *p, const int8_t *input, int8_t *output) {
  int32_t oy, ox, c, fy, fx;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t fy_lo, fy_hi;
    valid_taps(iy0, 1, p->f_h, p->in_h, &fy_lo, &fy_hi);
    for (ox = 0; ox < p->out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int32_t fx_lo, fx_hi;
      valid_taps(ix0, 1, p->f_w, p->in_w, &fx_lo, &fx_hi);
      for (c = 0; c < p->channels; ++c) {
        int32_t best = -128;
        for (fy = fy_lo; fy < fy_hi; ++fy) {
          const int8_t *x = input + ((iy0 + fy) * p->in_w + ix0) * p->channels + c;
          for (fx = fx_lo; fx < fx_hi; ++fx) {
            const int32_t v = x[fx * p->channels];
            if (v > best) best = v;
          }
        }
        output[(oy * p->out_w + ox) * p->channels + c] = clamp8(best, p->act_min, p->act_max);
      }
    }
  }
}

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
        output[(oy * p->out_w + ox) * p->channels + c] = clamp8(sum, p->act_min, p->act_max);
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

static int32_t mul_smaller_than_one(int32_t x, int32_t multiplier, int32_t shift) {
  return rounding_divide_by_pot(srdhm(x, multiplier), -shift);
}

void td_add_s8(const td_add *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t a = (input1[i] + p->in1_offset) * (1 << p->left_shift);
    const int32_t b = (input2[i] + p->in2_offset) * (1 << p->left_shift);
    const int32_t sum = mul_smaller_than_one(a, p->in1_multiplier, p->in1_shift) +
                        mul_smaller_than_one(b, p->in2_multiplier, p->in2_shift);
    const int32_t raw = mul_smaller_than_one(sum, p->out_multiplier, p->out_shift) + p->out_offset;
    output[i] = clamp8(raw, p->act_min, p->act_max);
  }
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

void td_copy(const int8_t *input, int8_t *output, int32_t size) { memmove(output, input, (size_t)size); }

void td_requantize_s8(const td_requantize *p, const int8_t *input, int8_t *output) {
  int32_t i;
  for (i = 0; i < p->size; ++i)
    output[i] = clamp8(requant(input[i] - p->in_zero_point, &p->rq) + p->out_zero_point, -128, 127);
}

/* ---- SOFTMAX: TFLite's reference int8 softmax, gemmlowp fixed point ----- */

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

/* exp(a) for a in [-1/4, 0), a and the result in Q0.31. */
static int32_t exp_on_interval(int32_t a) {
  const int32_t constant_term = 1895147668;   /* exp(-1/8) in Q0.31 */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 in Q0.31 */
  const int32_t x = fp_add(a, 1 << 28);       /* a + 1/8 */
  const int32_t x2 = srdhm(x, x);
  const int32_t x3 = srdhm(x2, x);
  const int32_t x4 = srdhm(x2, x2);
  const int32_t x4_over_4 = fp_mul_pot(x4, -2);
  const int32_t poly = fp_mul_pot(fp_add(srdhm(fp_add(x4_over_4, x3), constant_1_over_3), x2), -1);
  return fp_add(constant_term, srdhm(constant_term, fp_add(x, poly)));
}

/* exp(a) for a <= 0 in Q5.26; the result in Q0.31. */
static int32_t exp_on_negative_values(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t one_quarter = 1 << 24;
  const int32_t a_mod_quarter_minus_quarter = fp_sub(a & (one_quarter - 1), one_quarter);
  int32_t result = exp_on_interval(fp_mul_pot(a_mod_quarter_minus_quarter, 5));
  const int32_t remainder = fp_sub(a_mod_quarter_minus_quarter, a);
  int k;
  for (k = 0; k < 7; ++k) { /* exp(-2^(k-2)) for each set bit of the remainder */
    if (remainder & (1 << (24 + k))) result = srdhm(result, multipliers[k]);
  }
  if (a == 0) result = INT32_MAX;
  return result;
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
    int32_t max_in_row = -128, sum_of_exps = 0, headroom, num_bits_over_unit, shifted_scale;
    for (c = 0; c < p->depth; ++c)
      if (x[c] > max_in_row) max_in_row = x[c];
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled = srdhm(diff * (1 << p->input_left_shift), p->input_multiplier);
        sum_of_exps = fp_add(sum_of_exps, fp_mul_pot(exp_on_negative_values(scaled), -12));
      }
    }
    headroom = count_leading_zeros((uint32_t)sum_of_exps);
    num_bits_over_unit = 12 - headroom;
    shifted_scale = one_over_one_plus_x(
        (int32_t)(((uint32_t)sum_of_exps << headroom) - ((uint32_t)1 << 31)));
    for (c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled = srdhm(diff * (1 << p->input_left_shift), p->input_multiplier);
        const int32_t exp_in_0 = exp_on_negative_values(scaled);
        const int32_t unsat = rounding_divide_by_pot(srdhm(shifted_scale, exp_in_0), num_bits_over_unit + 31 - 8);
        out[c] = clamp8(unsat - 128, -128, 127);
      } else {
        out[c] = -128;
      }
    }
  }
}
