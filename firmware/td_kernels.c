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

/* Force inlining where GCC's heuristics would otherwise emit a call per four outputs. */
#if defined(__GNUC__)
#define TD_INLINE static inline __attribute__((always_inline))
#else
#define TD_INLINE static inline
#endif

/* floor((acc * m + 2^30) / 2^31), TFLite's SaturatingRoundingDoublingHighMul
 * for m >= 0, as the high word of acc * 2m + 2^31: one signed-by-unsigned high
 * multiply (RISC-V mulhsu) plus the carry out of the low word. */
TD_INLINE int32_t high_mul(int32_t acc, int32_t m) {
  const uint32_t m2 = (uint32_t)m << 1;
  const uint32_t low = (uint32_t)acc * m2;
  const int32_t high = (int32_t)(((int64_t)acc * (int64_t)m2) >> 32);
  return high + (int32_t)(low >> 31);
}

/* MultiplyByQuantizedMultiplier for accumulators below 2^30 in magnitude
 * (tinydeploy checks the bound per layer): RoundingDivideByPOT(t, right) is
 * then (t + 2^(right-1) - (t < 0)) >> right. */
TD_INLINE int32_t requant(int32_t acc, const td_requant *rq) {
  int32_t t;
  if (rq->left) acc = (int32_t)((uint32_t)acc << rq->left);
  t = high_mul(acc, rq->multiplier);
  return (t + rq->round + ((t >> 31) & rq->negative)) >> rq->right;
}

/* The same for a channel with left == 0 and right >= 1 (tinydeploy sets a
 * layer's fast_requant flag when every channel is so): (t >> 31) is -1 for a
 * negative t, which is the (t < 0) correction. */
TD_INLINE int32_t requant_fast(int32_t acc, const td_requant *rq) {
  const int32_t t = high_mul(acc, rq->multiplier);
  return (t + rq->round + (t >> 31)) >> rq->right;
}

int32_t td_multiply_by_quantized_multiplier(int32_t x, const td_requant *rq) { return requant(x, rq); }

TD_INLINE int8_t clamp8(int32_t v, int32_t lo, int32_t hi) {
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

/* ---- output stage shared by the convolutions ------------------------------ */

typedef struct out_stage {
  const td_requant *rq; /* of the first of the four channels */
  int32_t fast, count, offset, lo, hi;
} out_stage;

/* Requantize, offset, clamp and store four channels' accumulators. */
TD_INLINE void store_4(int8_t *restrict out, const out_stage *s, int32_t a0, int32_t a1, int32_t a2,
                           int32_t a3) {
  const td_requant *rq = s->rq;
  const int32_t offset = s->offset, lo = s->lo, hi = s->hi;
  if (s->fast && s->count == 4) {
    out[0] = clamp8(requant_fast(a0, &rq[0]) + offset, lo, hi);
    out[1] = clamp8(requant_fast(a1, &rq[1]) + offset, lo, hi);
    out[2] = clamp8(requant_fast(a2, &rq[2]) + offset, lo, hi);
    out[3] = clamp8(requant_fast(a3, &rq[3]) + offset, lo, hi);
  } else {
    const int32_t acc[4] = {a0, a1, a2, a3};
    int32_t j;
    for (j = 0; j < s->count; ++j) out[j] = clamp8(requant(acc[j], &rq[j]) + offset, lo, hi);
  }
}

/* ---- CONV_2D ------------------------------------------------------------ */

/* Four output channels of two pixels: the patches x0 and x1 (n values each)
 * times the weights interleaved by four, each loaded weight serving both
 * pixels; then the output stage. o1 == NULL computes one pixel. */
static void conv_block(const int8_t *restrict x0, const int8_t *restrict x1, const int8_t *restrict w, int32_t n,
                       const int32_t *restrict bias, const out_stage *s, int8_t *restrict o0, int8_t *restrict o1) {
  int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
  int32_t c0 = a0, c1 = a1, c2 = a2, c3 = a3;
  const int8_t *end = x0 + (n & ~1);
  while (x0 < end) { /* two patch values per iteration */
    int32_t u = x0[0], v = x1[0];
    a0 += u * w[0]; c0 += v * w[0];
    a1 += u * w[1]; c1 += v * w[1];
    a2 += u * w[2]; c2 += v * w[2];
    a3 += u * w[3]; c3 += v * w[3];
    u = x0[1];
    v = x1[1];
    a0 += u * w[4]; c0 += v * w[4];
    a1 += u * w[5]; c1 += v * w[5];
    a2 += u * w[6]; c2 += v * w[6];
    a3 += u * w[7]; c3 += v * w[7];
    x0 += 2;
    x1 += 2;
    w += 8;
  }
  if (n & 1) {
    const int32_t u = x0[0], v = x1[0];
    a0 += u * w[0]; c0 += v * w[0];
    a1 += u * w[1]; c1 += v * w[1];
    a2 += u * w[2]; c2 += v * w[2];
    a3 += u * w[3]; c3 += v * w[3];
  }
  store_4(o0, s, a0, a1, a2, a3);
  if (o1) store_4(o1, s, c0, c1, c2, c3);
}

/* Copy output pixel (oy, ox)'s receptive field into patch as [k_h][k_w][in_c],
 * taps outside the image set to the input zero point (which contributes
 * nothing once bias_full's -zero_point * sum(w) is added). */
static void gather_patch(const td_conv *p, const int8_t *restrict input, int8_t *restrict patch, int32_t oy,
                         int32_t ox) {
  const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
  const int8_t zero = (int8_t)(-p->in_offset);
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  int32_t ky, kx, c;
  if (p->dil_w == 1 && iy0 >= 0 && ix0 >= 0 && iy0 + (k_h - 1) * p->dil_h < in_h && ix0 + k_w <= in_w) {
    const int32_t row = k_w * in_c; /* inside the image: k_h contiguous runs */
    for (ky = 0; ky < k_h; ++ky) {
      const int8_t *src = input + ((iy0 + ky * p->dil_h) * in_w + ix0) * in_c;
      for (c = 0; c < row; ++c) *patch++ = src[c];
    }
    return;
  }
  for (ky = 0; ky < k_h; ++ky) {
    const int32_t iy = iy0 + ky * p->dil_h;
    for (kx = 0; kx < k_w; ++kx) {
      const int32_t ix = ix0 + kx * p->dil_w;
      if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
        for (c = 0; c < in_c; ++c) *patch++ = zero;
      } else {
        const int8_t *src = input + (iy * in_w + ix) * in_c;
        for (c = 0; c < in_c; ++c) *patch++ = src[c];
      }
    }
  }
}

/* Convolution as patches times weights, two output pixels at a time. A 1x1
 * convolution without padding reads its patches straight from the input;
 * others gather them into scratch (2 * k_h * k_w * in_c bytes, planned in the arena). */
void td_conv_2d(const td_conv *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  const int32_t out_c = p->out_c, out_w = p->out_w, pixels = p->out_h * p->out_w;
  const int32_t patch = p->k_h * p->k_w * p->in_c, groups = (out_c + 3) >> 2;
  const int direct = p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0;
  out_stage s;
  int32_t px, g;
  s.fast = p->fast_requant;
  s.offset = p->out_offset;
  s.lo = p->act_min;
  s.hi = p->act_max;
  for (px = 0; px < pixels; px += 2) {
    const int32_t second = px + 1 < pixels ? px + 1 : px; /* an odd last pixel: one pixel only */
    const int32_t oy0 = px / out_w, ox0 = px % out_w, oy1 = second / out_w, ox1 = second % out_w;
    const int8_t *x0, *x1;
    int8_t *o0 = output + px * out_c, *o1 = second != px ? output + second * out_c : NULL;
    if (direct) {
      x0 = input + (oy0 * p->stride_h * p->in_w + ox0 * p->stride_w) * p->in_c;
      x1 = input + (oy1 * p->stride_h * p->in_w + ox1 * p->stride_w) * p->in_c;
    } else {
      gather_patch(p, input, scratch, oy0, ox0);
      gather_patch(p, input, scratch + patch, oy1, ox1);
      x0 = scratch;
      x1 = scratch + patch;
    }
    for (g = 0; g < groups; ++g) {
      s.rq = p->rq + 4 * g;
      s.count = out_c - 4 * g < 4 ? out_c - 4 * g : 4;
      conv_block(x0, x1, p->weights + g * patch * 4, patch, p->bias_full + 4 * g, &s, o0 + 4 * g,
                 o1 ? o1 + 4 * g : NULL);
    }
  }
}

/* ---- DEPTHWISE_CONV_2D -------------------------------------------------- */

/* Four channels of one output pixel over the taps [ky_lo, ky_hi) x [kx_lo, kx_hi);
 * x points at the input for tap (0, 0) and channel c, w at the weights of channel c. */
static void dw_block(const int8_t *x, const int8_t *w, int32_t x_row, int32_t x_tap, int32_t w_row, int32_t w_tap,
                     int32_t ky_lo, int32_t ky_hi, int32_t kx_lo, int32_t kx_hi, int32_t offset,
                     const int32_t *bias, const out_stage *s, int8_t *out) {
  int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
  int32_t ky, kx;
  for (ky = ky_lo; ky < ky_hi; ++ky) {
    const int8_t *xp = x + ky * x_row + kx_lo * x_tap;
    const int8_t *wp = w + ky * w_row + kx_lo * w_tap;
    for (kx = kx_lo; kx < kx_hi; ++kx) {
      a0 += (xp[0] + offset) * wp[0];
      a1 += (xp[1] + offset) * wp[1];
      a2 += (xp[2] + offset) * wp[2];
      a3 += (xp[3] + offset) * wp[3];
      xp += x_tap;
      wp += w_tap;
    }
  }
  store_4(out, s, a0, a1, a2, a3);
}

/* Four channels of two horizontally adjacent output pixels whose windows are
 * inside the image (no offset: bias_full holds it); pixel 1 is pixel_step
 * input bytes after pixel 0. */
static void dw_block_2(const int8_t *restrict x0, int32_t pixel_step, const int8_t *restrict w, int32_t x_row,
                       int32_t x_tap, int32_t w_row, int32_t w_tap, int32_t k_h, int32_t k_w,
                       const int32_t *bias, const out_stage *s, int8_t *restrict o0, int8_t *restrict o1) {
  int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
  int32_t c0 = a0, c1 = a1, c2 = a2, c3 = a3;
  int32_t ky, kx;
  for (ky = 0; ky < k_h; ++ky) {
    const int8_t *xp = x0 + ky * x_row;
    const int8_t *wp = w + ky * w_row;
    for (kx = 0; kx < k_w; ++kx) {
      const int8_t *xq = xp + pixel_step;
      const int32_t w0 = wp[0], w1 = wp[1], w2 = wp[2], w3 = wp[3];
      a0 += xp[0] * w0; c0 += xq[0] * w0;
      a1 += xp[1] * w1; c1 += xq[1] * w1;
      a2 += xp[2] * w2; c2 += xq[2] * w2;
      a3 += xp[3] * w3; c3 += xq[3] * w3;
      xp += x_tap;
      wp += w_tap;
    }
  }
  store_4(o0, s, a0, a1, a2, a3);
  store_4(o1, s, c0, c1, c2, c3);
}

void td_depthwise_conv_2d(const td_depthwise *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in_c, out_c = p->out_c, in_w = p->in_w, m = p->depth_multiplier;
  const int32_t k_h = p->k_h, k_w = p->k_w, out_w = p->out_w;
  const int32_t x_row = p->dil_h * in_w * in_c, x_tap = p->dil_w * in_c, w_row = k_w * out_c, w_tap = out_c;
  const int32_t pixel_step = p->stride_w * in_c;
  out_stage s;
  int32_t oy, ox, c;
  s.fast = p->fast_requant;
  s.count = 4;
  s.offset = p->out_offset;
  s.lo = p->act_min;
  s.hi = p->act_max;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky_lo, ky_hi;
    valid_taps(iy0, p->dil_h, k_h, p->in_h, &ky_lo, &ky_hi);
    for (ox = 0; ox < out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      const int8_t *x = input + (iy0 * in_w + ix0) * in_c;
      int8_t *out = output + (oy * out_w + ox) * out_c;
      int32_t kx_lo, kx_hi, pair = 0, full;
      valid_taps(ix0, p->dil_w, k_w, in_w, &kx_lo, &kx_hi);
      full = ky_lo == 0 && ky_hi == k_h && kx_lo == 0 && kx_hi == k_w;
      if (full && m == 1 && (out_c & 3) == 0 && ox + 1 < out_w) { /* is the next window inside too? */
        int32_t lo, hi;
        valid_taps(ix0 + p->stride_w, p->dil_w, k_w, in_w, &lo, &hi);
        pair = lo == 0 && hi == k_w;
      }
      c = 0;
      if (m == 1) {
        const int32_t *bias = full ? p->bias_full : p->bias;
        for (; c + 3 < out_c; c += 4) {
          s.rq = p->rq + c;
          if (pair) {
            dw_block_2(x + c, pixel_step, p->weights + c, x_row, x_tap, w_row, w_tap, k_h, k_w, bias + c, &s,
                       out + c, out + out_c + c);
          } else {
            dw_block(x + c, p->weights + c, x_row, x_tap, w_row, w_tap, ky_lo, ky_hi, kx_lo, kx_hi,
                     full ? 0 : p->in_offset, bias + c, &s, out + c);
          }
        }
      }
      for (; c < out_c; ++c) {
        const int32_t ic = c / m;
        int32_t sum = p->bias[c], ky, kx;
        for (ky = ky_lo; ky < ky_hi; ++ky) {
          for (kx = kx_lo; kx < kx_hi; ++kx) {
            sum += (x[ky * x_row + kx * x_tap + ic] + p->in_offset) * p->weights[ky * w_row + kx * w_tap + c];
          }
        }
        out[c] = clamp8(requant(sum, &p->rq[c]) + p->out_offset, p->act_min, p->act_max);
      }
      if (pair) ++ox; /* the next pixel is done too */
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
  const int32_t channels = p->channels, in_w = p->in_w, out_w = p->out_w, lo = p->act_min, hi = p->act_max;
  int32_t oy, ox, c, fy, fx;
  for (oy = 0; oy < p->out_h; ++oy) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t fy_lo, fy_hi;
    valid_taps(iy0, 1, p->f_h, p->in_h, &fy_lo, &fy_hi);
    for (ox = 0; ox < out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      int8_t *restrict out = output + (oy * out_w + ox) * channels;
      int32_t fx_lo, fx_hi;
      valid_taps(ix0, 1, p->f_w, in_w, &fx_lo, &fx_hi);
      for (c = 0; c < channels; ++c) out[c] = -128;
      for (fy = fy_lo; fy < fy_hi; ++fy) { /* one tap at a time over every channel */
        for (fx = fx_lo; fx < fx_hi; ++fx) {
          const int8_t *restrict x = input + ((iy0 + fy) * in_w + ix0 + fx) * channels;
          for (c = 0; c < channels; ++c)
            if (x[c] > out[c]) out[c] = x[c];
        }
      }
      if (lo > -128 || hi < 127)
        for (c = 0; c < channels; ++c) out[c] = clamp8(out[c], lo, hi);
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

/* TFLite's int8 Add: both inputs rescaled to a common scale with 20 bits of
 * headroom, summed, rescaled to the output (MultiplyByQuantizedMultiplier-
 * SmallerThanOneExp each time). The operands stay below 2^29, so requant()'s
 * shortcut is exact here. */
void td_add_s8(const td_add *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
  const int32_t in1 = p->in1_offset, in2 = p->in2_offset, shift = p->left_shift, out = p->out_offset;
  const int32_t lo = p->act_min, hi = p->act_max;
  int32_t i;
  for (i = 0; i < p->size; ++i) {
    const int32_t a = requant((input1[i] + in1) * (1 << shift), &p->rq[0]);
    const int32_t b = requant((input2[i] + in2) * (1 << shift), &p->rq[1]);
    output[i] = clamp8(requant(a + b, &p->rq[2]) + out, lo, hi);
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
