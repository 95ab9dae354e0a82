/* tinydeploy C engine: the arithmetic and the busiest kernels as inline
 * functions. td_kernels.c compiles each once (td_conv_2d() and so on); a
 * generated td_model.c includes this file and calls td_conv_2d_inline(),
 * td_depthwise_conv_2d_inline(), td_max_pool_2d_inline(), td_add_s8_inline()
 * and td_fully_connected_s8_inline() with each layer's constant parameters, so
 * the compiler specializes every layer (its sizes and strides become
 * immediates, fixed loops unroll). Results are the same either way. */
#ifndef TD_KERNELS_INLINE_H_
#define TD_KERNELS_INLINE_H_

#include <stddef.h>
#include <stdint.h>

#include "td_kernels.h"

#if defined(__GNUC__)
#define TD_INLINE static inline __attribute__((always_inline))
#define TD_NOINLINE __attribute__((noinline))
/* An empty volatile asm: GCC schedules nothing across it, so the code on either
 * side keeps its own registers (between a block's taps or rows, and between the
 * channels of an output stage). */
#define TD_SCHEDULE_BARRIER() __asm__ volatile("")
/* Unroll the loop that follows (a kernel's taps: a constant count in a specialized layer;
 * TD_UNROLL_SMALL: a small layer's pixels, dw_small()). */
#define TD_PRAGMA_TEXT(text) _Pragma(#text)
#define TD_PRAGMA(text) TD_PRAGMA_TEXT(text) /* text's macros expanded first */
#if defined(__clang__)
#define TD_UNROLL _Pragma("unroll 8")
#define TD_UNROLL_SMALL TD_PRAGMA(unroll TD_SMALL_SIDE)
#else
#define TD_UNROLL _Pragma("GCC unroll 8")
#define TD_UNROLL_SMALL TD_PRAGMA(GCC unroll TD_SMALL_SIDE)
#endif
#else
#define TD_INLINE static inline
#define TD_NOINLINE
#define TD_SCHEDULE_BARRIER() ((void)0)
#define TD_UNROLL
#define TD_UNROLL_SMALL
#endif

/* The blocks below are written out for these (a0..a3 four channels; a, b, c, d four pixels;
 * two pixels a and c): change them together. */
#if TD_QUAD != 4 || TD_PAIR != 2 || TD_CHANNEL_GROUP != 4
#error "td_kernels.h's TD_QUAD, TD_PAIR and TD_CHANNEL_GROUP name the blocks' four pixels, two pixels and four channels"
#endif

/* Every output byte the convolution, depthwise and pooling kernels write, base[index], goes
 * through TD_STORE: a plain store, unless a test defines it first to record the order of the
 * writes (tests/test_cengine.py checks it against the overlap tinydeploy plans). */
#ifndef TD_STORE
#define TD_STORE(base, index, value) ((base)[index] = (value))
#endif

/* ---- TFLite / gemmlowp fixed-point arithmetic --------------------------- */

/* SaturatingRoundingDoublingHighMul. For b >= 0 (every requantization
 * multiplier) trunc((a*b + nudge) / 2^31), with nudge = 2^30 when a*b >= 0
 * and 1 - 2^30 otherwise, equals floor((a*b + 2^30) / 2^31). */
static inline int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  return (int32_t)(((int64_t)a * b + ((int64_t)1 << 30)) >> 31);
}

/* RoundingDivideByPOT, exactly as TFLite writes it (no intermediate overflow). */
static inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((uint32_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* floor((acc * m + 2^30) / 2^31), TFLite's SaturatingRoundingDoublingHighMul
 * for m >= 0, as the high word of acc * 2m + 2^31: one signed-by-unsigned high
 * multiply (RISC-V mulhsu) plus the carry out of the low word; m2 = 2m. */
TD_INLINE int32_t high_mul(int32_t acc, uint32_t m2) {
  const uint32_t low = (uint32_t)acc * m2;
  const int32_t high = (int32_t)(((int64_t)acc * (int64_t)m2) >> 32);
  return high + (int32_t)(low >> 31);
}

/* MultiplyByQuantizedMultiplier for accumulators below 2^30 in magnitude
 * (tinydeploy checks the bound per layer): RoundingDivideByPOT(t, right) is
 * then (t + 2^(right-1) - (t < 0)) >> right. */
TD_INLINE int32_t requant(int32_t acc, const td_requant *rq) {
  const int32_t right = rq->right;
  int32_t t;
  if (rq->left) acc = (int32_t)((uint32_t)acc << rq->left);
  t = high_mul(acc, (uint32_t)rq->multiplier << 1);
  if (right == 0) return t;
  return (t + (1 << (right - 1)) + (t >> 31)) >> right;
}

/* The same plus the output offset, in one rounding, for a channel with
 * left == 0 and right >= 1 (a layer's fast_requant flag). With t =
 * high_mul(acc, 2m) the result is (t + c) >> right, c = 2^(right-1) +
 * (offset << right) - (t < 0), and nested floors make that floor((acc * 2m +
 * 2^31 + c * 2^32) / 2^(32 + right)). Quadrupling acc moves the 2^31 into the
 * high word: with h = floor(4 acc m / 2^32) (one signed high multiply, RISC-V
 * mulh: m < 2^31) it is (h + 2c + 1) >> (right + 1). round_offset is 2c + 1
 * without the correction and fast_shift is right + 1. h < 0 exactly when acc
 * < 0, as is t < 0 but at acc = -1 with m = 2^30, where both give the offset.
 * neg is -2, the doubled correction, or 0 where the activation clamps away
 * every output the correction could change (out_stage.neg). tinydeploy checks
 * per layer that 4 acc and h + round_offset stay within int32. */
TD_INLINE int32_t fast_product(int32_t acc, int32_t m) {
  return (int32_t)(((int64_t)(acc * 4) * m) >> 32);
}

TD_INLINE int32_t round_shift(int32_t h, int32_t round_offset, int32_t shift, int32_t neg) {
  return (h + round_offset + ((h >> 31) & neg)) >> shift;
}

TD_INLINE int32_t requant_fast_offset(int32_t acc, const td_requant *rq, int32_t neg) {
  return round_shift(fast_product(acc, rq->multiplier), rq->round_offset, rq->fast_shift, neg);
}

TD_INLINE int8_t clamp8(int32_t v, int32_t lo, int32_t hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return (int8_t)v;
}

/* The kernel taps [*lo, *hi) that fall inside [0, size) for a window starting at origin. */
TD_INLINE void valid_taps(int32_t origin, int32_t dilation, int32_t taps, int32_t size, int32_t *lo, int32_t *hi) {
  int32_t first = 0, last = taps;
  if (origin < 0) first = (-origin + dilation - 1) / dilation;
  if (origin + (taps - 1) * dilation >= size) last = (size - origin + dilation - 1) / dilation;
  if (last < first) last = first;
  *lo = first;
  *hi = last;
}

/* ---- output stage shared by the convolutions ------------------------------ */

/* neg: the (t < 0) correction of requant_fast_offset() changes the rounded value q
 * only at a tie, from q to q - 1 where q = (t + 2^(right-1)) / 2^right, and
 * with t < 0 that q is at most 0. Then both q and q - 1 plus the output offset
 * are at most the offset, so when the activation's lower bound is at or above
 * the offset (ReLU, ReLU6) both clamp to it: the correction is dropped (0;
 * else -2). */
typedef struct out_stage {
  const td_requant *rq; /* of the first of the four channels */
  int32_t fast, count, offset, lo, hi, neg;
} out_stage;

/* A layer's output stage for four channels (rq is set per group). */
TD_INLINE out_stage output_stage(int32_t fast, int32_t offset, int32_t lo, int32_t hi) {
  out_stage s;
  s.rq = NULL;
  s.fast = fast;
  s.count = 4;
  s.offset = offset;
  s.lo = lo;
  s.hi = hi;
  s.neg = lo >= offset ? 0 : -2;
  return s;
}

/* Requantize, offset, clamp and store four channels' accumulators. */
TD_INLINE void store_4(int8_t *restrict out, const out_stage *s, int32_t a0, int32_t a1, int32_t a2,
                           int32_t a3) {
  const td_requant *rq = s->rq;
  const int32_t offset = s->offset, lo = s->lo, hi = s->hi;
  if (s->fast && s->count == 4) {
    TD_STORE(out, 0, clamp8(requant_fast_offset(a0, &rq[0], s->neg), lo, hi));
    TD_STORE(out, 1, clamp8(requant_fast_offset(a1, &rq[1], s->neg), lo, hi));
    TD_STORE(out, 2, clamp8(requant_fast_offset(a2, &rq[2], s->neg), lo, hi));
    TD_STORE(out, 3, clamp8(requant_fast_offset(a3, &rq[3], s->neg), lo, hi));
  } else { /* the last channels of a layer whose count is not a multiple of four */
    const int32_t acc[4] = {a0, a1, a2, a3};
    int32_t j;
    for (j = 0; j < s->count; ++j)
      TD_STORE(out, j,
               clamp8(s->fast ? requant_fast_offset(acc[j], &rq[j], s->neg) : requant(acc[j], &rq[j]) + offset,
                      lo, hi));
  }
}

/* One channel's output for two pixels: requant_fast_offset() written out with
 * its fields loaded once (calling it twice measured 1,700 more instructions
 * per inference on the demo model: GCC reloaded the fields after the store). */
TD_INLINE void store_pair(int8_t *restrict o0, int8_t *restrict o1, const td_requant *rq, int32_t a, int32_t c,
                          const out_stage *s) {
  const int32_t m = rq->multiplier;
  const int32_t round_offset = rq->round_offset, shift = rq->fast_shift;
  TD_STORE(o0, 0, clamp8(round_shift(fast_product(a, m), round_offset, shift, s->neg), s->lo, s->hi));
  TD_STORE(o1, 0, clamp8(round_shift(fast_product(c, m), round_offset, shift, s->neg), s->lo, s->hi));
}

/* One channel's output for four pixels, o_step bytes apart: requant_fast_offset()
 * (or requant() and the offset, on a layer without fast_requant) with the
 * channel's fields loaded once for the four. */
TD_INLINE void store_quad(int8_t *restrict o, int32_t o_step, const td_requant *rq, const out_stage *s, int32_t a0,
                          int32_t a1, int32_t a2, int32_t a3) {
  const int32_t lo = s->lo, hi = s->hi;
  if (s->fast) {
    const int32_t m = rq->multiplier;
    const int32_t round_offset = rq->round_offset, shift = rq->fast_shift, neg = s->neg;
    TD_STORE(o, 0, clamp8(round_shift(fast_product(a0, m), round_offset, shift, neg), lo, hi));
    TD_STORE(o, o_step, clamp8(round_shift(fast_product(a1, m), round_offset, shift, neg), lo, hi));
    TD_STORE(o, 2 * o_step, clamp8(round_shift(fast_product(a2, m), round_offset, shift, neg), lo, hi));
    TD_STORE(o, 3 * o_step, clamp8(round_shift(fast_product(a3, m), round_offset, shift, neg), lo, hi));
  } else {
    TD_STORE(o, 0, clamp8(requant(a0, rq) + s->offset, lo, hi));
    TD_STORE(o, o_step, clamp8(requant(a1, rq) + s->offset, lo, hi));
    TD_STORE(o, 2 * o_step, clamp8(requant(a2, rq) + s->offset, lo, hi));
    TD_STORE(o, 3 * o_step, clamp8(requant(a3, rq) + s->offset, lo, hi));
  }
}

/* Four channels of two pixels (o1 may be NULL: one pixel). Channel by
 * channel, so each channel's fields serve both pixels and few registers are live. */
TD_INLINE void store_4x2(int8_t *restrict o0, int8_t *restrict o1, const out_stage *s, int32_t a0, int32_t a1,
                         int32_t a2, int32_t a3, int32_t c0, int32_t c1, int32_t c2, int32_t c3) {
  if (s->fast && s->count == 4 && o1) {
    const td_requant *rq = s->rq;
    store_pair(o0, o1, &rq[0], a0, c0, s);
    store_pair(o0 + 1, o1 + 1, &rq[1], a1, c1, s);
    store_pair(o0 + 2, o1 + 2, &rq[2], a2, c2, s);
    store_pair(o0 + 3, o1 + 3, &rq[3], a3, c3, s);
    return;
  }
  store_4(o0, s, a0, a1, a2, a3);
  if (o1) store_4(o1, s, c0, c1, c2, c3);
}

/* ---- CONV_2D ------------------------------------------------------------ */

/* Up to four output channels (s->count, a constant where the layer is
 * specialized; the weights are interleaved by four either way) of two pixels:
 * patches x0 and x1 of `rows` runs of `run` contiguous values, `stride` apart
 * (rows = 1 for a gathered patch), times the weights, each loaded weight
 * serving both pixels; then the output stage. Lanes past the count are
 * neither loaded nor multiplied. o1 == NULL computes one pixel. */
TD_INLINE void conv_block(const int8_t *restrict x0, const int8_t *restrict x1, int32_t rows, int32_t run,
                          int32_t stride, const int8_t *restrict w, const int32_t *restrict bias,
                          const out_stage *s, int8_t *restrict o0, int8_t *restrict o1) {
  const int32_t n = s->count;
  int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
  int32_t c0 = a0, c1 = a1, c2 = a2, c3 = a3;
  int32_t r;
  for (r = 0; r < rows; ++r) {
    const int8_t *p0 = x0 + r * stride, *p1 = x1 + r * stride;
    const int8_t *end = p0 + (run & ~1);
    while (p0 < end) { /* two values per iteration */
      int32_t u = p0[0], v = p1[0];
      a0 += u * w[0]; c0 += v * w[0];
      if (n > 1) { a1 += u * w[1]; c1 += v * w[1]; }
      if (n > 2) { a2 += u * w[2]; c2 += v * w[2]; }
      if (n > 3) { a3 += u * w[3]; c3 += v * w[3]; }
      u = p0[1];
      v = p1[1];
      a0 += u * w[4]; c0 += v * w[4];
      if (n > 1) { a1 += u * w[5]; c1 += v * w[5]; }
      if (n > 2) { a2 += u * w[6]; c2 += v * w[6]; }
      if (n > 3) { a3 += u * w[7]; c3 += v * w[7]; }
      p0 += 2;
      p1 += 2;
      w += 8;
      TD_SCHEDULE_BARRIER(); /* two taps' loads at a time: hoisting a row's spills accumulators */
    }
    if (run & 1) {
      const int32_t u = p0[0], v = p1[0];
      a0 += u * w[0]; c0 += v * w[0];
      if (n > 1) { a1 += u * w[1]; c1 += v * w[1]; }
      if (n > 2) { a2 += u * w[2]; c2 += v * w[2]; }
      if (n > 3) { a3 += u * w[3]; c3 += v * w[3]; }
      w += 4;
      TD_SCHEDULE_BARRIER();
    }
  }
  store_4x2(o0, o1, s, a0, a1, a2, a3, c0, c1, c2, c3);
}

/* Up to four output channels (s->count, a constant where the layer is
 * specialized) of four pixels, pixel_step input bytes apart, whose windows are
 * `rows` runs of `run` contiguous input bytes, row_stride apart (one run: a
 * pointwise layer's pixels, or a one-column layer's rows; else a row's pixels
 * whose windows lie inside the image): each loaded weight serves four pixels
 * and each loaded input four channels; then channel by channel, each channel's
 * requantization fields serve the four pixels, whose outputs are out_c apart. */
TD_INLINE void run_block(const int8_t *restrict x, int32_t pixel_step, int32_t rows, int32_t run, int32_t row_stride,
                         const int8_t *restrict w, const int32_t *restrict bias, const out_stage *s,
                         int8_t *restrict out, int32_t out_c) {
  const int32_t n = s->count;
  int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3]; /* channel j of pixel p: a{j}, b{j}, c{j}, d{j} */
  int32_t b0 = a0, b1 = a1, b2 = a2, b3 = a3, c0 = a0, c1 = a1, c2 = a2, c3 = a3, d0 = a0, d1 = a1, d2 = a2, d3 = a3;
  int32_t r, i;
  for (r = 0; r < rows; ++r) {
    const int8_t *xr = x + r * row_stride;
    TD_UNROLL
    for (i = 0; i < run; ++i, w += 4) {
      const int32_t u = xr[i], v = xr[i + pixel_step], y = xr[i + 2 * pixel_step], z = xr[i + 3 * pixel_step];
      int32_t k = w[0];
      a0 += u * k; b0 += v * k; c0 += y * k; d0 += z * k;
      TD_SCHEDULE_BARRIER(); /* one weight at a time: sixteen accumulators leave few registers */
      if (n > 1) { k = w[1]; a1 += u * k; b1 += v * k; c1 += y * k; d1 += z * k; }
      TD_SCHEDULE_BARRIER();
      if (n > 2) { k = w[2]; a2 += u * k; b2 += v * k; c2 += y * k; d2 += z * k; }
      TD_SCHEDULE_BARRIER();
      if (n > 3) { k = w[3]; a3 += u * k; b3 += v * k; c3 += y * k; d3 += z * k; }
      TD_SCHEDULE_BARRIER();
    }
  }
  store_quad(out, out_c, &s->rq[0], s, a0, b0, c0, d0);
  TD_SCHEDULE_BARRIER();
  if (n > 1) store_quad(out + 1, out_c, &s->rq[1], s, a1, b1, c1, d1);
  TD_SCHEDULE_BARRIER();
  if (n > 2) store_quad(out + 2, out_c, &s->rq[2], s, a2, b2, c2, d2);
  TD_SCHEDULE_BARRIER();
  if (n > 3) store_quad(out + 3, out_c, &s->rq[3], s, a3, b3, c3, d3);
}

/* Every output channel of four pixels (run_block), four channels at a time. */
TD_INLINE void run_blocks(const td_conv *p, const int8_t *x, int32_t pixel_step, int32_t rows, int32_t run,
                          int32_t row_stride, out_stage *s, const out_stage *rest, int8_t *out) {
  const int32_t full = p->out_c >> 2, patch = rows * run;
  int32_t g;
  for (g = 0; g < full; ++g) {
    s->rq = p->rq + 4 * g;
    run_block(x, pixel_step, rows, run, row_stride, p->weights + g * patch * 4, p->bias_full + 4 * g, s, out + 4 * g,
              p->out_c);
  }
  if (rest->count)
    run_block(x, pixel_step, rows, run, row_stride, p->weights + full * patch * 4, p->bias_full + 4 * full, rest,
              out + 4 * full, p->out_c);
}

/* A packed int4 weight byte, loaded signed: its low and its high nibble, sign-extended. */
#define TD_LOW4(b) ((int32_t)((uint32_t)(b) << 28) >> 28)
#define TD_HIGH4(b) ((b) >> 4)

/* conv_block with int4 weights kept packed: the four channels' weights for one
 * input value are two bytes (channels 0 and 1, then 2 and 3, low nibble first),
 * unpacked in registers as they are loaded. */
TD_INLINE void conv_block4(const int8_t *restrict x0, const int8_t *restrict x1, int32_t rows, int32_t run,
                           int32_t stride, const int8_t *restrict w, const int32_t *restrict bias,
                           const out_stage *s, int8_t *restrict o0, int8_t *restrict o1) {
  int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
  int32_t c0 = a0, c1 = a1, c2 = a2, c3 = a3;
  int32_t r, i;
  for (r = 0; r < rows; ++r) {
    const int8_t *p0 = x0 + r * stride, *p1 = x1 + r * stride;
    for (i = 0; i < run; ++i) {
      const int32_t u = p0[i], v = p1[i], b0 = w[0], b1 = w[1];
      const int32_t w0 = TD_LOW4(b0), w1 = TD_HIGH4(b0), w2 = TD_LOW4(b1), w3 = TD_HIGH4(b1);
      a0 += u * w0; c0 += v * w0;
      a1 += u * w1; c1 += v * w1;
      a2 += u * w2; c2 += v * w2;
      a3 += u * w3; c3 += v * w3;
      w += 2;
    }
  }
  store_4x2(o0, o1, s, a0, a1, a2, a3, c0, c1, c2, c3);
}

/* Copy output pixel (oy, ox)'s receptive field into patch as [k_h][k_w][in_c],
 * taps outside the image set to the input zero point (which contributes
 * nothing once bias_full's -zero_point * sum(w) is added). */
TD_INLINE void gather_patch(const td_conv *p, const int8_t *restrict input, int8_t *restrict patch, int32_t oy,
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

/* Is output pixel (oy, ox)'s window inside the image, so the kernel can read
 * it straight from the input as k_h runs of k_w * in_c values? */
TD_INLINE int window_inside(const td_conv *p, int32_t oy, int32_t ox) {
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  return p->dil_w == 1 && iy0 >= 0 && ix0 >= 0 && iy0 + (p->k_h - 1) * p->dil_h < p->in_h &&
         ix0 + p->k_w <= p->in_w;
}

/* Every output channel of one pixel whose window reaches over the border, read in place (no
 * scratch): four channels at a time over every tap, the taps outside the input taking the
 * input zero point (zero, -in_offset), as gather_patch() would have written them. */
TD_INLINE void conv_direct(const td_conv *p, const int8_t *restrict input, int32_t oy, int32_t ox,
                           const out_stage *s, const out_stage *rest, int8_t *restrict out) {
  const int32_t in_c = p->in_c, in_h = p->in_h, in_w = p->in_w, k_h = p->k_h, k_w = p->k_w;
  const int32_t zero = -p->in_offset, patch = k_h * k_w * in_c, groups = (p->out_c + 3) >> 2;
  const int32_t iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  int32_t g, ky, kx, c;
  for (g = 0; g < groups; ++g) {
    out_stage stage = 4 * g + 4 <= p->out_c ? *s : *rest;
    const int8_t *w = p->weights + g * patch * 4;
    int32_t a0 = p->bias_full[4 * g], a1 = p->bias_full[4 * g + 1], a2 = p->bias_full[4 * g + 2];
    int32_t a3 = p->bias_full[4 * g + 3];
    for (ky = 0; ky < k_h; ++ky) {
      const int32_t iy = iy0 + ky * p->dil_h;
      for (kx = 0; kx < k_w; ++kx, w += 4 * in_c) {
        const int32_t ix = ix0 + kx * p->dil_w;
        const int8_t *wp = w;
        if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
          int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
          for (c = 0; c < in_c; ++c, wp += 4) {
            s0 += wp[0];
            s1 += wp[1];
            s2 += wp[2];
            s3 += wp[3];
          }
          a0 += zero * s0;
          a1 += zero * s1;
          a2 += zero * s2;
          a3 += zero * s3;
        } else {
          const int8_t *x = input + (iy * in_w + ix) * in_c;
          for (c = 0; c < in_c; ++c, wp += 4) {
            const int32_t v = x[c];
            a0 += v * wp[0];
            a1 += v * wp[1];
            a2 += v * wp[2];
            a3 += v * wp[3];
          }
        }
      }
    }
    stage.rq = p->rq + 4 * g;
    store_4(out + 4 * g, &stage, a0, a1, a2, a3);
  }
}

/* Output channels [4g, 4g + s->count) of one or two pixels (conv_block). */
TD_INLINE void conv_group(const td_conv *p, const int8_t *x0, const int8_t *x1, int32_t rows, int32_t length,
                          int32_t stride, int32_t g, int32_t patch, const out_stage *s, int8_t *o0, int8_t *o1) {
  if (p->int4_weights) {
    conv_block4(x0, x1, rows, length, stride, p->weights + g * patch * 2, p->bias_full + 4 * g, s, o0 + 4 * g,
                o1 ? o1 + 4 * g : NULL);
  } else {
    conv_block(x0, x1, rows, length, stride, p->weights + g * patch * 4, p->bias_full + 4 * g, s, o0 + 4 * g,
               o1 ? o1 + 4 * g : NULL);
  }
}

/* Convolution as patches times weights, four channels at a time (the last one
 * to three channels as a group of their own) of four output pixels where
 * their windows are inside the image (a pointwise layer's pixels, a
 * one-column layer's rows, four pixels of a row), else of two. Windows inside
 * the image are read in place; a pair with a window over the border is
 * gathered into scratch (2 * k_h * k_w * in_c bytes, planned in the arena)
 * with the input zero point in the padding, or, with direct_borders, each of
 * its pixels read in place (conv_direct()), with no scratch. */
TD_INLINE void td_conv_2d_inline(const td_conv *p, const int8_t *input, int8_t *output, int8_t *scratch) {
  const int32_t out_c = p->out_c, out_w = p->out_w, pixels = p->out_h * p->out_w, in_c = p->in_c;
  const int32_t run = p->k_w * in_c, patch = p->k_h * run, full = out_c >> 2;
  const int32_t in_row = p->dil_h * p->in_w * in_c;
  /* one column (a series): a window is k_h whole rows, one contiguous run */
  const int32_t column = out_w == 1 && p->k_w == p->in_w && p->pad_left == 0 && p->dil_h == 1 && !p->int4_weights;
  out_stage s, rest;
  int32_t px, g;
  s = output_stage(p->fast_requant, p->out_offset, p->act_min, p->act_max);
  rest = s;
  rest.count = out_c & 3;
  rest.rq = p->rq + 4 * full;
  px = 0;
  if (p->k_h == 1 && p->k_w == 1 && p->stride_h == 1 && p->stride_w == 1 && p->pad_top == 0 && p->pad_left == 0 &&
      !p->int4_weights) { /* pointwise: four pixels at a time, the rest in pairs */
    if (p->reverse) { /* the last pixels first: the odd one, a pair, then fours down to pixel 0 */
      const int32_t quads = pixels - pixels % TD_QUAD;
      for (px = pixels; px > quads; --px) {
        const int8_t *x = input + (px - 1) * in_c;
        int8_t *o = output + (px - 1) * out_c;
        for (g = 0; g < full; ++g) {
          s.rq = p->rq + 4 * g;
          conv_group(p, x, x, 1, in_c, 0, g, in_c, &s, o, NULL);
        }
        if (rest.count) conv_group(p, x, x, 1, in_c, 0, full, in_c, &rest, o, NULL);
      }
      for (px = quads - TD_QUAD; px >= 0; px -= TD_QUAD)
        run_blocks(p, input + px * in_c, in_c, 1, in_c, 0, &s, &rest, output + px * out_c);
      return;
    }
    for (; px + TD_QUAD <= pixels; px += TD_QUAD)
      run_blocks(p, input + px * in_c, in_c, 1, in_c, 0, &s, &rest, output + px * out_c);
  }
  for (; px < pixels; px += TD_PAIR) {
    const int32_t second = px + 1 < pixels ? px + 1 : px; /* an odd last pixel: one pixel only */
    const int32_t oy0 = px / out_w, ox0 = px % out_w, oy1 = second / out_w, ox1 = second % out_w;
    const int8_t *x0, *x1;
    int32_t rows, length, stride;
    int8_t *o0 = output + px * out_c, *o1 = second != px ? output + second * out_c : NULL;
    if (column && px + TD_QUAD - 1 < pixels && window_inside(p, px, 0) && window_inside(p, px + TD_QUAD - 1, 0)) {
      /* four rows whose windows are inside: four at a time (the loop then goes on in pairs) */
      run_blocks(p, input + (px * p->stride_h - p->pad_top) * p->in_w * in_c, p->stride_h * p->in_w * in_c, 1, patch, 0,
                 &s, &rest, o0);
      px += TD_QUAD - TD_PAIR;
      continue;
    }
    if (!p->int4_weights && ox0 + TD_QUAD - 1 < out_w && window_inside(p, oy0, ox0) &&
        window_inside(p, oy0, ox0 + TD_QUAD - 1)) {
      /* four pixels of a row whose windows are inside: four at a time (the loop then goes on in pairs) */
      run_blocks(p, input + ((oy0 * p->stride_h - p->pad_top) * p->in_w + ox0 * p->stride_w - p->pad_left) * in_c,
                 p->stride_w * in_c, p->k_h, run, in_row, &s, &rest, o0);
      px += TD_QUAD - TD_PAIR;
      continue;
    }
    if (window_inside(p, oy0, ox0) && window_inside(p, oy1, ox1)) {
      x0 = input + ((oy0 * p->stride_h - p->pad_top) * p->in_w + ox0 * p->stride_w - p->pad_left) * in_c;
      x1 = input + ((oy1 * p->stride_h - p->pad_top) * p->in_w + ox1 * p->stride_w - p->pad_left) * in_c;
      rows = p->k_h;
      length = run;
      stride = in_row;
    } else if (p->direct_borders) { /* no scratch: each pixel's window read in place */
      conv_direct(p, input, oy0, ox0, &s, &rest, o0);
      if (o1) conv_direct(p, input, oy1, ox1, &s, &rest, o1);
      continue;
    } else {
      gather_patch(p, input, scratch, oy0, ox0);
      gather_patch(p, input, scratch + patch, oy1, ox1);
      x0 = scratch;
      x1 = scratch + patch;
      rows = 1;
      length = patch;
      stride = 0;
    }
    for (g = 0; g < full; ++g) {
      s.rq = p->rq + 4 * g;
      conv_group(p, x0, x1, rows, length, stride, g, patch, &s, o0, o1);
    }
    if (rest.count) conv_group(p, x0, x1, rows, length, stride, full, patch, &rest, o0, o1);
  }
}

/* The outputs [*lo, *hi) along one axis whose windows (span input values
 * from o * stride - pad) lie inside [0, size). */
TD_INLINE void inside_range(int32_t pad, int32_t stride, int32_t span, int32_t size, int32_t out, int32_t *lo,
                            int32_t *hi) {
  const int32_t room = size - span + pad; /* the last window start, plus pad */
  *lo = (pad + stride - 1) / stride;
  *hi = room < 0 ? 0 : room / stride + 1;
  if (*hi > out) *hi = out;
  if (*lo > *hi) *lo = *hi;
}

/* ---- DEPTHWISE_CONV_2D -------------------------------------------------- */

/* Up to four channels (s->count, a constant where the layer is specialized) of
 * one output pixel over the taps [ky_lo, ky_hi) x [kx_lo, kx_hi); x points at
 * the input for tap (0, 0) and channel c, w at the weights of channel c. Lanes
 * past the count are neither read nor written. */
TD_INLINE void dw_block(const int8_t *x, const int8_t *w, int32_t x_row, int32_t x_tap, int32_t w_row, int32_t w_tap,
                     int32_t ky_lo, int32_t ky_hi, int32_t kx_lo, int32_t kx_hi, int32_t offset,
                     const int32_t *bias, const out_stage *s, int8_t *out) {
  const int32_t n = s->count;
  int32_t a0 = bias[0], a1 = n > 1 ? bias[1] : 0, a2 = n > 2 ? bias[2] : 0, a3 = n > 3 ? bias[3] : 0;
  int32_t ky, kx;
  for (ky = ky_lo; ky < ky_hi; ++ky) {
    const int8_t *xp = x + ky * x_row + kx_lo * x_tap;
    const int8_t *wp = w + ky * w_row + kx_lo * w_tap;
    for (kx = kx_lo; kx < kx_hi; ++kx) {
      a0 += (xp[0] + offset) * wp[0];
      if (n > 1) a1 += (xp[1] + offset) * wp[1];
      if (n > 2) a2 += (xp[2] + offset) * wp[2];
      if (n > 3) a3 += (xp[3] + offset) * wp[3];
      xp += x_tap;
      wp += w_tap;
    }
  }
  store_4(out, s, a0, a1, a2, a3);
}

/* Up to four channels (as dw_block) of two output pixels whose windows
 * cover the same taps: rows [ky_lo, ky_hi), every column; pixel 1 is
 * pixel_step input bytes after pixel 0. offset is 0 for windows inside the
 * image (bias_full holds it), the input offset for a top or bottom row. */
TD_INLINE void dw_block_2(const int8_t *restrict x0, int32_t pixel_step, const int8_t *restrict w, int32_t x_row,
                          int32_t x_tap, int32_t w_row, int32_t w_tap, int32_t ky_lo, int32_t ky_hi, int32_t k_w,
                          int32_t offset, const int32_t *bias, const out_stage *s, int8_t *restrict o0,
                          int8_t *restrict o1) {
  const int32_t n = s->count;
  int32_t a0 = bias[0], a1 = n > 1 ? bias[1] : 0, a2 = n > 2 ? bias[2] : 0, a3 = n > 3 ? bias[3] : 0;
  int32_t c0 = a0, c1 = a1, c2 = a2, c3 = a3;
  int32_t ky, kx;
  for (ky = ky_lo; ky < ky_hi; ++ky) {
    const int8_t *xp = x0 + ky * x_row;
    const int8_t *wp = w + ky * w_row;
    for (kx = 0; kx < k_w; ++kx) {
      const int8_t *xq = xp + pixel_step;
      const int32_t w0 = wp[0];
      a0 += (xp[0] + offset) * w0; c0 += (xq[0] + offset) * w0;
      if (n > 1) { const int32_t w1 = wp[1]; a1 += (xp[1] + offset) * w1; c1 += (xq[1] + offset) * w1; }
      if (n > 2) { const int32_t w2 = wp[2]; a2 += (xp[2] + offset) * w2; c2 += (xq[2] + offset) * w2; }
      if (n > 3) { const int32_t w3 = wp[3]; a3 += (xp[3] + offset) * w3; c3 += (xq[3] + offset) * w3; }
      xp += x_tap;
      wp += w_tap;
    }
  }
  store_4x2(o0, o1, s, a0, a1, a2, a3, c0, c1, c2, c3);
}

/* One channel of four output pixels whose windows cover the same taps,
 * pixel_step input bytes (o_step output bytes) apart: rows x cols taps, x_row
 * and x_tap apart in the input, x and w at the channel's first covered tap,
 * out at its output. Taps are walked in order; where the pixels' windows
 * overlap (stride 1 along the step), a specialized layer loads each input
 * byte once for the four accumulators that use it. bias is bias_full with
 * offset 0 where the windows cover every tap; else the bias and the input
 * offset, which the covered weights' sum carries in. */
TD_INLINE void dw_quad(const int8_t *restrict x, int32_t pixel_step, const int8_t *restrict w, int32_t x_row,
                       int32_t x_tap, int32_t w_row, int32_t w_tap, int32_t rows, int32_t cols, int32_t bias,
                       int32_t offset, const td_requant *rq, const out_stage *s, int8_t *restrict out,
                       int32_t o_step) {
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, weights = 0;
  int32_t ky, kx;
  TD_UNROLL
  for (ky = 0; ky < rows; ++ky) {
    const int8_t *xp = x + ky * x_row;
    const int8_t *wp = w + ky * w_row;
    TD_UNROLL
    for (kx = 0; kx < cols; ++kx) {
      const int32_t k = wp[kx * w_tap];
      const int8_t *xq = xp + kx * x_tap;
      a0 += xq[0] * k;
      a1 += xq[pixel_step] * k;
      a2 += xq[2 * pixel_step] * k;
      a3 += xq[3 * pixel_step] * k;
      weights += k; /* dead code where offset is 0 */
    }
    TD_SCHEDULE_BARRIER(); /* a row's loads at a time: hoisting them all spills accumulators */
  }
  bias += offset * weights;
  store_quad(out, o_step, rq, s, a0 + bias, a1 + bias, a2 + bias, a3 + bias);
}

/* Two output channels of one input channel (a depth multiplier above 1) of four output pixels,
 * as dw_quad: each input byte loaded once for both channels' weights (w[0] and w[1] per tap),
 * eight accumulators. bias and rq are the first channel's, out its output; the second
 * channel's are the next. */
TD_INLINE void dw_quad_2(const int8_t *restrict x, int32_t pixel_step, const int8_t *restrict w, int32_t x_row,
                         int32_t x_tap, int32_t w_row, int32_t w_tap, int32_t rows, int32_t cols,
                         const int32_t *bias, int32_t offset, const td_requant *rq, const out_stage *s,
                         int8_t *restrict out, int32_t o_step) {
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0, wa = 0, wb = 0, ba, bb;
  int32_t ky, kx;
  TD_UNROLL
  for (ky = 0; ky < rows; ++ky) {
    const int8_t *xp = x + ky * x_row;
    const int8_t *wp = w + ky * w_row;
    TD_UNROLL
    for (kx = 0; kx < cols; ++kx) {
      const int32_t k = wp[kx * w_tap], l = wp[kx * w_tap + 1];
      const int8_t *xq = xp + kx * x_tap;
      const int32_t v0 = xq[0], v1 = xq[pixel_step], v2 = xq[2 * pixel_step], v3 = xq[3 * pixel_step];
      a0 += v0 * k;
      b0 += v0 * l;
      a1 += v1 * k;
      b1 += v1 * l;
      a2 += v2 * k;
      b2 += v2 * l;
      a3 += v3 * k;
      b3 += v3 * l;
      wa += k; /* dead code where offset is 0 */
      wb += l;
    }
    TD_SCHEDULE_BARRIER(); /* a row's loads at a time: hoisting them all spills accumulators */
  }
  ba = bias[0] + offset * wa;
  bb = bias[1] + offset * wb;
  store_quad(out, o_step, rq, s, a0 + ba, a1 + ba, a2 + ba, a3 + ba);
  TD_SCHEDULE_BARRIER();
  store_quad(out + 1, o_step, rq + 1, s, b0 + bb, b1 + bb, b2 + bb, b3 + bb);
}

/* Every channel of four output pixels (dw_quad), channel by channel (with an even depth
 * multiplier, an input channel's output channels two at a time: dw_quad_2), over the
 * taps [ky_lo, ky_hi) x [kx_lo, kx_hi); x points at the input for tap (0, 0). */
TD_INLINE void dw_quads(const td_depthwise *p, const int8_t *x, int32_t pixel_step, int32_t ky_lo, int32_t ky_hi,
                        int32_t kx_lo, int32_t kx_hi, const int32_t *bias, int32_t offset, const out_stage *s,
                        int8_t *out, int32_t o_step) {
  const int32_t x_row = p->dil_h * p->in_w * p->in_c, x_tap = p->dil_w * p->in_c;
  const int32_t w_row = p->k_w * p->out_c, w_tap = p->out_c;
  const int8_t *xs = x + ky_lo * x_row + kx_lo * x_tap, *ws = p->weights + ky_lo * w_row + kx_lo * w_tap;
  const int32_t m = p->depth_multiplier; /* output channel c reads input channel c / m */
  int32_t c;
  if (m > 1 && !(m & 1)) {
    for (c = 0; c < p->out_c; c += 2) {
      dw_quad_2(xs + c / m, pixel_step, ws + c, x_row, x_tap, w_row, w_tap, ky_hi - ky_lo, kx_hi - kx_lo, bias + c,
                offset, p->rq + c, s, out + c, o_step);
    }
    return;
  }
  for (c = 0; c < p->out_c; ++c) {
    dw_quad(xs + c / m, pixel_step, ws + c, x_row, x_tap, w_row, w_tap, ky_hi - ky_lo, kx_hi - kx_lo, bias[c], offset,
            p->rq + c, s, out + c, o_step);
  }
}

/* Output channel c of one pixel from its accumulator, bias included. */
TD_INLINE void dw_store(int8_t *out, int32_t c, int32_t sum, const td_requant *rq, const out_stage *s) {
  TD_STORE(out, c, clamp8(s->fast ? requant_fast_offset(sum, &rq[c], s->neg) : requant(sum, &rq[c]) + s->offset,
                          s->lo, s->hi));
}

/* Every channel of one output pixel (a depth multiplier other than 1), over the taps
 * [ky_lo, ky_hi) x [kx_lo, kx_hi); x points at the input for tap (0, 0). The m output channels
 * of an input channel go together (up to four; two at a time for a larger even m, else one),
 * loading each input byte, with the input offset added, once for all of them. Where the window
 * covers every tap the offset is in bias_full instead (0 to add). */
TD_INLINE void dw_channels(const td_depthwise *p, const int8_t *x, int8_t *out, int32_t ky_lo, int32_t ky_hi,
                           int32_t kx_lo, int32_t kx_hi, const out_stage *s) {
  const int32_t m = p->depth_multiplier, x_row = p->dil_h * p->in_w * p->in_c, x_tap = p->dil_w * p->in_c;
  const int32_t w_row = p->k_w * p->out_c, w_tap = p->out_c, rows = ky_hi - ky_lo, cols = kx_hi - kx_lo;
  const int32_t full = ky_lo == 0 && ky_hi == p->k_h && kx_lo == 0 && kx_hi == p->k_w;
  const int32_t *bias = full ? p->bias_full : p->bias, offset = full ? 0 : p->in_offset;
  const int8_t *xs = x + ky_lo * x_row + kx_lo * x_tap, *ws = p->weights + ky_lo * w_row + kx_lo * w_tap;
  const int32_t step = m <= 4 ? m : (m & 1) ? 1 : 2;
  int32_t ic, j, c = 0;
  for (ic = 0; ic < p->in_c; ++ic) {
    for (j = 0; j < m; j += step, c += step) {
      int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, ky, kx;
      TD_UNROLL
      for (ky = 0; ky < rows; ++ky) {
        const int8_t *xp = xs + ky * x_row + ic, *wp = ws + ky * w_row + c;
        TD_UNROLL
        for (kx = 0; kx < cols; ++kx) {
          const int32_t v = xp[kx * x_tap] + offset;
          const int8_t *wk = wp + kx * w_tap;
          a0 += v * wk[0];
          if (step > 1) a1 += v * wk[1];
          if (step > 2) a2 += v * wk[2];
          if (step > 3) a3 += v * wk[3];
        }
      }
      /* scalars, each channel stored on its own: an array of accumulators goes to the stack */
      dw_store(out, c, a0 + bias[c], p->rq, s);
      if (step > 1) dw_store(out, c + 1, a1 + bias[c + 1], p->rq, s);
      if (step > 2) dw_store(out, c + 2, a2 + bias[c + 2], p->rq, s);
      if (step > 3) dw_store(out, c + 3, a3 + bias[c + 3], p->rq, s);
    }
  }
}

/* One group of up to four channels (s->count) starting at channel c, of one
 * pixel or of a pair (pair, pixel 1 step bytes on), by the taps its window
 * covers. Each case is its own call site, so a specialized layer gets
 * straight-line code for each. */
TD_INLINE void dw_group(const td_depthwise *p, const int8_t *x, int32_t c, int32_t pair, int32_t step,
                        int32_t rows_full, int32_t cols_full, int32_t ky_lo, int32_t ky_hi, int32_t kx_lo,
                        int32_t kx_hi, const out_stage *s, int8_t *out, int8_t *out2) {
  const int32_t x_row = p->dil_h * p->in_w * p->in_c, x_tap = p->dil_w * p->in_c;
  const int32_t w_row = p->k_w * p->out_c, w_tap = p->out_c, k_h = p->k_h, k_w = p->k_w;
  if (pair && rows_full) {
    dw_block_2(x + c, step, p->weights + c, x_row, x_tap, w_row, w_tap, 0, k_h, k_w, 0, p->bias_full + c, s,
               out + c, out2 + c);
  } else if (pair) {
    dw_block_2(x + c, step, p->weights + c, x_row, x_tap, w_row, w_tap, ky_lo, ky_hi, k_w, p->in_offset,
               p->bias + c, s, out + c, out2 + c);
  } else if (rows_full && cols_full) {
    dw_block(x + c, p->weights + c, x_row, x_tap, w_row, w_tap, 0, k_h, 0, k_w, 0, p->bias_full + c, s, out + c);
  } else {
    dw_block(x + c, p->weights + c, x_row, x_tap, w_row, w_tap, ky_lo, ky_hi, kx_lo, kx_hi, p->in_offset,
             p->bias + c, s, out + c);
  }
}

/* A small layer (td_depthwise.small: tinydeploy sets it where its kernel cost model
 * finds it cheaper, for at most 16 x 16 outputs and 256 taps over all of them): channel by
 * channel, every pixel's every tap. In
 * a specialized layer the pixel and tap loops unroll, the taps in the padding drop out,
 * and the channel's weights and input values are each loaded once for all the
 * pixels that use them. */
TD_INLINE void dw_small(const td_depthwise *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in_c, out_c = p->out_c, in_w = p->in_w, in_h = p->in_h, k_h = p->k_h, k_w = p->k_w;
  const int32_t offset = p->in_offset, neg = output_stage(1, p->out_offset, p->act_min, p->act_max).neg;
  int32_t c, oy, ox, ky, kx;
  for (c = 0; c < out_c; ++c) {
    const int8_t *x = input + c / p->depth_multiplier, *w = p->weights + c;
    TD_UNROLL_SMALL
    for (oy = 0; oy < p->out_h; ++oy) {
      TD_UNROLL_SMALL
      for (ox = 0; ox < p->out_w; ++ox) {
        int32_t acc = p->bias[c];
        TD_UNROLL_SMALL
        for (ky = 0; ky < k_h; ++ky) {
          const int32_t iy = oy * p->stride_h - p->pad_top + ky * p->dil_h;
          TD_UNROLL_SMALL
          for (kx = 0; kx < k_w; ++kx) {
            const int32_t ix = ox * p->stride_w - p->pad_left + kx * p->dil_w;
            if (iy >= 0 && iy < in_h && ix >= 0 && ix < in_w)
              acc += (x[(iy * in_w + ix) * in_c] + offset) * w[(ky * k_w + kx) * out_c];
          }
        }
        TD_STORE(output, (oy * p->out_w + ox) * out_c + c,
                 clamp8(p->fast_requant ? requant_fast_offset(acc, &p->rq[c], neg)
                                        : requant(acc, &p->rq[c]) + p->out_offset,
                        p->act_min, p->act_max));
      }
    }
  }
}

/* Depthwise convolution. A small layer is unrolled whole (dw_small()). Else,
 * with a depth multiplier of 1 (or any, with td_depthwise.quads), four pixels whose windows cover the same
 * taps go a channel at a time (dw_quads()): along a row (a top or bottom row's too),
 * down a layer one pixel wide (a time series, whose windows run down the
 * rows), and down each border column of four rows whose windows cover every
 * row, done before those rows' other pixels. The other pixels go four
 * channels at a time, the last one to three as a group of their own (any
 * other multiplier: one at a time), two whose windows cover every tap column
 * in pairs sharing weight loads. Windows inside the image need no offset
 * arithmetic. */
TD_INLINE void td_depthwise_conv_2d_inline(const td_depthwise *p, const int8_t *input, int8_t *output) {
  const int32_t in_c = p->in_c, out_c = p->out_c, in_w = p->in_w;
  const int32_t k_h = p->k_h, k_w = p->k_w, out_w = p->out_w, out_h = p->out_h;
  const int32_t grouped = p->depth_multiplier == 1;
  const int32_t quads = grouped || p->quads; /* four pixels a channel at a time (dw_quads()) */
  const int32_t blocked = grouped ? out_c & ~3 : 0; /* channels done four at a time */
  out_stage s, rest;
  int32_t oy, ox, c, y_lo, y_hi, x_lo, x_hi, edge_done = 0;
  s = output_stage(p->fast_requant, p->out_offset, p->act_min, p->act_max);
  rest = s;
  rest.count = out_c & 3;
  rest.rq = p->rq + blocked;
  if (p->small) {
    dw_small(p, input, output);
    return;
  }
  /* windows cover every row for oy in [y_lo, y_hi), every column for ox in [x_lo, x_hi); the
   * border columns of rows below edge_done are done */
  inside_range(p->pad_top, p->stride_h, (k_h - 1) * p->dil_h + 1, p->in_h, out_h, &y_lo, &y_hi);
  inside_range(p->pad_left, p->stride_w, (k_w - 1) * p->dil_w + 1, in_w, out_w, &x_lo, &x_hi);
  for (oy = 0; oy < out_h; ++oy) {
    const int32_t iy0 = oy * p->stride_h - p->pad_top;
    int32_t ky_lo, ky_hi, rows_full, column_pair = 0;
    valid_taps(iy0, p->dil_h, k_h, p->in_h, &ky_lo, &ky_hi);
    rows_full = ky_lo == 0 && ky_hi == k_h;
    if (out_w == 1 && quads && rows_full && oy + TD_QUAD - 1 < out_h) { /* four rows (one pixel each) inside? */
      int32_t lo, hi, kx_lo, kx_hi;
      valid_taps(iy0 + (TD_QUAD - 1) * p->stride_h, p->dil_h, k_h, p->in_h, &lo, &hi);
      valid_taps(-p->pad_left, p->dil_w, k_w, in_w, &kx_lo, &kx_hi);
      if (lo == 0 && hi == k_h && kx_lo == 0 && kx_hi == k_w) {
        dw_quads(p, input + (iy0 * in_w - p->pad_left) * in_c, p->stride_h * in_w * in_c, 0, k_h, 0, k_w,
                 p->bias_full, 0, &s, output + oy * out_c, out_c);
        oy += TD_QUAD - 1;
        continue;
      }
    }
    if (p->border_columns && oy >= edge_done && oy >= y_lo && oy + TD_QUAD - 1 < y_hi) {
      /* the border columns of four rows whose windows cover every row: four pixels down each column */
      for (ox = 0; ox < out_w; ++ox) {
        int32_t kx_lo, kx_hi;
        if (ox == x_lo) ox = x_hi; /* skip the inside columns */
        if (ox >= out_w) break;
        valid_taps(ox * p->stride_w - p->pad_left, p->dil_w, k_w, in_w, &kx_lo, &kx_hi);
        dw_quads(p, input + (iy0 * in_w + ox * p->stride_w - p->pad_left) * in_c, p->stride_h * in_w * in_c, 0, k_h,
                 kx_lo, kx_hi, p->bias, p->in_offset, &s, output + (oy * out_w + ox) * out_c, out_w * out_c);
      }
      edge_done = oy + TD_QUAD;
    }
    if (out_w == 1 && grouped && rows_full && oy + 1 < out_h) { /* does the next row's window cover every row too? */
      int32_t lo, hi;
      valid_taps(iy0 + p->stride_h, p->dil_h, k_h, p->in_h, &lo, &hi);
      column_pair = lo == 0 && hi == k_h;
    }
    for (ox = 0; ox < out_w; ++ox) {
      const int32_t ix0 = ox * p->stride_w - p->pad_left;
      const int8_t *x = input + (iy0 * in_w + ix0) * in_c;
      int8_t *out = output + (oy * out_w + ox) * out_c;
      int32_t kx_lo, kx_hi, cols_full, pair = 0, step = p->stride_w * in_c;
      int8_t *out2 = out + out_c;
      valid_taps(ix0, p->dil_w, k_w, in_w, &kx_lo, &kx_hi);
      cols_full = kx_lo == 0 && kx_hi == k_w;
      if (oy < edge_done && (ox < x_lo || ox >= x_hi)) continue; /* done with its column's four rows */
      /* four pixels of this row whose windows cover every column? */
      if (quads && cols_full && ox + TD_QUAD - 1 < out_w) {
        int32_t lo, hi;
        valid_taps(ix0 + (TD_QUAD - 1) * p->stride_w, p->dil_w, k_w, in_w, &lo, &hi);
        if (lo == 0 && hi == k_w) {
          if (rows_full) {
            dw_quads(p, x, p->stride_w * in_c, 0, k_h, 0, k_w, p->bias_full, 0, &s, out, out_c);
          } else { /* a top or bottom row */
            dw_quads(p, x, p->stride_w * in_c, ky_lo, ky_hi, 0, k_w, p->bias, p->in_offset, &s, out, out_c);
          }
          ox += TD_QUAD - 1;
          continue;
        }
      }
      if (grouped && cols_full && ox + 1 < out_w) { /* does the next window cover every column too? */
        int32_t lo, hi;
        valid_taps(ix0 + p->stride_w, p->dil_w, k_w, in_w, &lo, &hi);
        pair = lo == 0 && hi == k_w;
      } else if (column_pair && cols_full) {
        pair = 1;
        step = p->stride_h * in_w * in_c;
        out2 = out + out_w * out_c;
      }
      for (c = 0; c < blocked; c += 4) {
        s.rq = p->rq + c;
        dw_group(p, x, c, pair, step, rows_full, cols_full, ky_lo, ky_hi, kx_lo, kx_hi, &s, out, out2);
      }
      if (grouped && rest.count) {
        dw_group(p, x, blocked, pair, step, rows_full, cols_full, ky_lo, ky_hi, kx_lo, kx_hi, &rest, out, out2);
      } else if (!grouped && rows_full && cols_full) { /* each case its own call site: constant taps */
        dw_channels(p, x, out, 0, k_h, 0, k_w, &s);
      } else if (!grouped && rows_full) {
        dw_channels(p, x, out, 0, k_h, kx_lo, kx_hi, &s);
      } else if (!grouped && cols_full) {
        dw_channels(p, x, out, ky_lo, ky_hi, 0, k_w, &s);
      } else if (!grouped) {
        dw_channels(p, x, out, ky_lo, ky_hi, kx_lo, kx_hi, &s);
      }
      if (pair && column_pair) ++oy; /* the next row (one pixel) is done too */
      else if (pair) ++ox;          /* the next pixel is done too */
    }
  }
}

/* ---- FULLY_CONNECTED ------------------------------------------------------ */

/* One unit's output from its accumulator (the rounding as td_fully_connected says). */
TD_INLINE int8_t fc_output(const td_fully_connected *p, int32_t acc, const td_requant *rq, int32_t neg) {
  if (p->fast_requant) return clamp8(requant_fast_offset(acc, rq, neg), p->act_min, p->act_max);
  if (p->single_rounding) {
    const int32_t s = rq->right;
    acc = (int32_t)(((int64_t)acc * rq->multiplier + ((int64_t)1 << (s - 1))) >> s);
  } else {
    acc = requant(acc, rq);
  }
  return clamp8(acc + p->out_offset, p->act_min, p->act_max);
}

/* Four units at a time, each loaded input serving the four (their weight rows
 * are depth apart: immediate offsets where the layer is specialized). */
TD_INLINE void td_fully_connected_s8_inline(const td_fully_connected *p, const int8_t *input, int8_t *output) {
  const int32_t depth = p->depth, units = p->units, blocked = units & ~3;
  /* one rounding has no correction to drop; else as the convolutions' output stage */
  const int32_t neg = p->single_rounding ? 0 : output_stage(1, p->out_offset, p->act_min, p->act_max).neg;
  int32_t b, u, i;
  for (b = 0; b < p->batches; ++b) {
    const int8_t *x = input + b * depth;
    int8_t *out = output + b * units;
    for (u = 0; u < blocked; u += 4) {
      const int8_t *w = p->weights + u * depth;
      int32_t a0 = p->bias_full[u], a1 = p->bias_full[u + 1], a2 = p->bias_full[u + 2], a3 = p->bias_full[u + 3];
      for (i = 0; i < depth; ++i) {
        const int32_t v = x[i];
        a0 += v * w[i];
        a1 += v * w[i + depth];
        a2 += v * w[i + 2 * depth];
        a3 += v * w[i + 3 * depth];
      }
      out[u] = fc_output(p, a0, &p->rq[u], neg);
      out[u + 1] = fc_output(p, a1, &p->rq[u + 1], neg);
      out[u + 2] = fc_output(p, a2, &p->rq[u + 2], neg);
      out[u + 3] = fc_output(p, a3, &p->rq[u + 3], neg);
    }
    for (u = blocked; u < units; ++u) { /* its own bounds: a specialized layer drops it when empty */
      const int8_t *w = p->weights + u * depth;
      int32_t acc = p->bias_full[u];
      for (i = 0; i < depth; ++i) acc += x[i] * w[i];
      out[u] = fc_output(p, acc, &p->rq[u], neg);
    }
  }
}

/* ---- MAX_POOL_2D ---------------------------------------------------------- */

TD_INLINE void td_max_pool_2d_inline(const td_pool *p, const int8_t *input, int8_t *output) {
  const int32_t channels = p->channels, in_w = p->in_w, out_w = p->out_w, lo = p->act_min, hi = p->act_max;
  const int32_t row = in_w * channels;
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
      const int8_t *restrict x = input + (iy0 * in_w + ix0) * channels;
      if (fy_lo == 0 && fy_hi == p->f_h && fx_lo == 0 && fx_hi == p->f_w) {
        for (c = 0; c < channels; ++c) { /* a window inside the input: every tap, unrolled in a specialized layer */
          int32_t best = -128;
          TD_UNROLL
          for (fy = 0; fy < p->f_h; ++fy) {
            TD_UNROLL
            for (fx = 0; fx < p->f_w; ++fx) {
              const int32_t v = x[fy * row + fx * channels + c];
              if (v > best) best = v;
            }
          }
          TD_STORE(out, c, clamp8(best, lo, hi));
        }
        continue;
      }
      for (c = 0; c < channels; ++c) { /* the window's maximum in a register; strides are constants per layer */
        int32_t best = -128;
        for (fy = fy_lo; fy < fy_hi; ++fy) {
          for (fx = fx_lo; fx < fx_hi; ++fx) {
            const int32_t v = x[fy * row + fx * channels + c];
            if (v > best) best = v;
          }
        }
        TD_STORE(out, c, clamp8(best, lo, hi));
      }
    }
  }
}

/* ---- ADD ------------------------------------------------------------------ */

/* TFLite's int8 Add: both inputs rescaled to a common scale with 20 bits of
 * headroom (looked up), summed and rescaled to the output. */
TD_INLINE void td_add_s8_inline(const td_add *p, const int8_t *input1, const int8_t *input2, int8_t *output) {
  const int32_t *t1 = p->scaled1 + 128, *t2 = p->scaled2 + 128;
  const int32_t lo = p->act_min, hi = p->act_max, size = p->size;
  const int32_t neg = output_stage(1, p->out_offset, lo, hi).neg;
  int32_t i;
  for (i = 0; i < size; ++i) {
    const int32_t sum = t1[input1[i]] + t2[input2[i]];
    output[i] = clamp8(p->fast_requant ? requant_fast_offset(sum, &p->rq, neg) : requant(sum, &p->rq) + p->out_offset,
                       lo, hi);
  }
}

#endif /* TD_KERNELS_INLINE_H_ */
