/* tinydeploy C engine: int8 kernels with TFLite's integer arithmetic.
 *
 * Every kernel reproduces the result of TFLite's reference kernels
 * (tensorflow/lite/kernels/internal/reference/...) bit for bit: the same
 * fixed-point requantization (a Q31 multiplier and a power-of-two shift, each
 * rounded the way TFLite rounds), the same clamping and the same treatment of
 * padding. The arithmetic is rearranged where that gives identical integers
 * and fewer instructions, e.g. the input zero point is folded into the bias
 * when a window lies wholly inside the image.
 *
 * All parameters (multipliers, shifts, packed weights) are prepared by
 * tinydeploy in Python and emitted as constants by the generated td_model.c;
 * nothing here allocates or computes a scale at run time. Portable C99. */
#ifndef TD_KERNELS_H_
#define TD_KERNELS_H_

#include <stdint.h>

/* 16-byte alignment for weights and the arena, where a SIMD kernel (the ESP32-S3's 128-bit
 * loads, ESP-NN) could read them whole. */
#if defined(__GNUC__)
#define TD_ALIGN16 __attribute__((aligned(16)))
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
#define TD_ALIGN16 _Alignas(16)
#else
#define TD_ALIGN16
#endif

/* The order of work of the windowed kernels (td_kernels_inline.h), in the numbers tinydeploy
 * plans by: its lowering.py holds the same in WorkOrder, sets td_depthwise's small and
 * border_columns and bounds how far each layer's output may overlap its input by them, and
 * the generated td_model.c stops the build where these differ. */
#define TD_QUAD 4          /* pixels a block computes together (run_block, dw_quad); a
                              depthwise layer's border columns go this many rows down */
#define TD_PAIR 2          /* pixels of the other convolution and depthwise blocks (conv_block,
                              conv_block4, dw_block_2); int4 convolutions go in pairs only */
#define TD_CHANNEL_GROUP 4 /* output channels a block computes together (convolution weights
                              are packed by them) */
#define TD_SMALL_SIDE 16   /* a small depthwise layer's most outputs along each axis, which
                              dw_small() unrolls */

#ifdef __cplusplus
extern "C" {
#endif

/* One output channel's requantization: TFLite's MultiplyByQuantizedMultiplier
 * with its Q31 multiplier and its shift split into a left part (>= 0) and a
 * right part (>= 0). On layers tinydeploy marks fast_requant, round_offset = 2^right + (output
 * offset << (right + 1)) + 1 and fast_shift = right + 1 fold both roundings
 * and the output offset into one shift (requant_fast_offset()). */
typedef struct td_requant {
  int32_t multiplier;
  int32_t round_offset;
  int16_t left;
  int8_t right;
  int8_t fast_shift;
} td_requant;

/* CONV_2D, per-channel int8 or int4 weights. weights are packed by tinydeploy as
 * [ceil(out_c / 4)][k_h][k_w][in_c][4] (zeros past out_c); with int4_weights
 * set, two to a byte in that order, the first in the low nibble (half the
 * flash). bias_full and rq have ceil(out_c / 4) * 4 entries. bias_full = bias +
 * in_offset * sum of the channel's weights (padding taps read the input zero
 * point, which then adds 0). */
typedef struct td_conv {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
  int32_t in_offset, out_offset, act_min, act_max;
  int32_t fast_requant; /* every channel: left == 0, right >= 1, round_offset cannot overflow */
  int32_t int4_weights; /* weights hold two int4 values a byte */
  /* direct_borders (int8 weights): a pixel whose window reaches over the border is read in
   * place, a pixel at a time, instead of gathered with its pair into scratch; tinydeploy picks
   * it by its kernel cost model, and then plans no scratch. */
  int32_t direct_borders;
  /* reverse (a pointwise layer only): its pixels from the last to the first, four at a time,
   * so that an output wider than its input may be written over the input from above; tinydeploy
   * sets it where the memory plan gains by it. */
  int32_t reverse;
  const int8_t *weights;
  const int32_t *bias_full;
  const td_requant *rq;
} td_conv;

/* DEPTHWISE_CONV_2D: weights in TFLite's layout [k_h][k_w][out_c], out
 * channel o reads input channel o / depth_multiplier. */
typedef struct td_depthwise {
  int32_t in_h, in_w, in_c, out_h, out_w, out_c, depth_multiplier;
  int32_t k_h, k_w, stride_h, stride_w, dil_h, dil_w, pad_top, pad_left;
  int32_t in_offset, out_offset, act_min, act_max;
  int32_t fast_requant; /* every channel: left == 0, right >= 1, round_offset cannot overflow */
  /* The order of work, which tinydeploy plans the output's overlap with the input
   * for: small, the whole layer unrolled channel by channel (its output apart);
   * border_columns, the border columns of TD_QUAD rows done before those rows. */
  int32_t small, border_columns;
  /* quads: with a depth multiplier above 1, four pixels whose windows cover the same taps
   * a channel at a time too (dw_quads()), as with a multiplier of 1; else channel by channel
   * a pixel at a time. tinydeploy picks small and quads by its kernel cost model. */
  int32_t quads;
  const int8_t *weights;
  const int32_t *bias;
  const int32_t *bias_full;
  const td_requant *rq;
} td_depthwise;

/* FULLY_CONNECTED: weights [units][depth] (TFLite's layout), rq has one entry
 * per unit (the same for every unit when the weights are per-tensor).
 * single_rounding: TFLite's per-channel fully connected kernel rounds once,
 * (acc * multiplier + 2^(s-1)) >> s with s = rq.right, instead of twice; with
 * fast_requant, rq's round_offset and fast_shift give the same in one shift. */
typedef struct td_fully_connected {
  int32_t batches, depth, units, single_rounding;
  int32_t out_offset, act_min, act_max, fast_requant;
  const int8_t *weights;
  const int32_t *bias_full; /* bias + in_offset * sum of the unit's weights */
  const td_requant *rq;
} td_fully_connected;

/* MAX_POOL_2D and AVERAGE_POOL_2D (same quantization in and out). */
typedef struct td_pool {
  int32_t in_h, in_w, channels, out_h, out_w;
  int32_t f_h, f_w, stride_h, stride_w, pad_top, pad_left;
  int32_t act_min, act_max;
} td_pool;

/* MEAN over the spatial axes of a [1, H, W, C] tensor (or over T of [1, T, C]):
 * TFLite's integer QuantizedMeanOrSum, where rq already holds the scale ratio
 * times 1 / (H * W). */
typedef struct td_mean {
  int32_t h, w, channels;
  int32_t in_zero_point, out_zero_point;
  td_requant rq;
} td_mean;

/* ADD of two tensors of the same shape (TFLite's int8 Add with left_shift 20).
 * scaled1[x + 128], scaled2[x + 128]: each input x offset, shifted left 20 and
 * rescaled to the common scale (tinydeploy computes the 256 values as TFLite
 * does); rq rescales their sum (fast_requant as for the convolutions). */
typedef struct td_add {
  int32_t size, out_offset, act_min, act_max, fast_requant;
  const int32_t *scaled1, *scaled2;
  td_requant rq;
} td_add;

/* PAD of a 4-D tensor with the output zero point. */
typedef struct td_pad {
  int32_t in_dims[4], out_dims[4], before[4];
  int8_t value;
} td_pad;

/* SOFTMAX int8 -> int8 (output scale 1/256, zero point -128). exps[d] is
 * TFLite's fixed-point exp of the input difference -d (Q0.31; 0 where the
 * reference skips the difference), computed by tinydeploy. */
typedef struct td_softmax {
  int32_t rows, depth;
  const int32_t *exps;
} td_softmax;

/* QUANTIZE int8 -> int8: requantization to another scale and zero point. */
typedef struct td_requantize {
  int32_t size, in_zero_point, out_zero_point;
  td_requant rq;
} td_requantize;

/* scratch: 2 * k_h * k_w * in_c bytes (a pair's gathered windows), unused (may be NULL) where
 * every window lies inside the input and dil_w is 1 (window_inside()), or with direct_borders. */
void td_conv_2d(const td_conv *p, const int8_t *input, int8_t *output, int8_t *scratch);
void td_depthwise_conv_2d(const td_depthwise *p, const int8_t *input, int8_t *output);
void td_fully_connected_s8(const td_fully_connected *p, const int8_t *input, int8_t *output);
void td_max_pool_2d(const td_pool *p, const int8_t *input, int8_t *output);
void td_average_pool_2d(const td_pool *p, const int8_t *input, int8_t *output);
void td_mean_s8(const td_mean *p, const int8_t *input, int8_t *output);
void td_add_s8(const td_add *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void td_pad_s8(const td_pad *p, const int8_t *input, int8_t *output);
void td_softmax_s8(const td_softmax *p, const int8_t *input, int8_t *output);
void td_requantize_s8(const td_requantize *p, const int8_t *input, int8_t *output);
/* RESHAPE when the planner could not make it a view. */
void td_copy(const int8_t *input, int8_t *output, int32_t size);

/* Exposed for tests: TFLite's MultiplyByQuantizedMultiplier, and the fast
 * layers' form of it plus the output offset (neg as out_stage.neg). */
int32_t td_multiply_by_quantized_multiplier(int32_t x, const td_requant *rq);
int32_t td_requant_fast_offset(int32_t x, const td_requant *rq, int32_t neg);

#ifdef __cplusplus
}
#endif

#endif /* TD_KERNELS_H_ */
