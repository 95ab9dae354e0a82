/* tinydeploy's signal front end: a raw sensor window -> the int8 features a network takes.
 *
 * The same integer arithmetic as tinydeploy.core.frontend, operation for operation, so
 * the two agree byte for byte on every window (docs/frontend.md). A front end is a chain
 * of blocks described by a td_frontend_config that tinydeploy generates
 * (td_frontend_config.c, with its tables); nothing here allocates or prints, and the
 * caller gives the scratch memory (td_frontend_scratch_bytes() or the generated
 * *_SCRATCH_BYTES says how much).
 *
 * Samples are int16 with a stated input scale (real value = sample * scale), channels
 * interleaved: window[step * channels + channel]. td_frontend_quantize() makes them from
 * floats with the arithmetic the reference uses (build without -ffast-math). */
#ifndef TD_FRONTEND_H_
#define TD_FRONTEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Block kinds: the values are tinydeploy.core.frontend's Block.code. */
#define TD_FRONTEND_NORMALIZE 1
#define TD_FRONTEND_DECIMATE 2
#define TD_FRONTEND_SPECTRUM 3
#define TD_FRONTEND_STATS 4

/* Statistics: the index in tinydeploy.core.frontend.STATS. */
#define TD_FRONTEND_MEAN 0
#define TD_FRONTEND_STD 1
#define TD_FRONTEND_MIN 2
#define TD_FRONTEND_MAX 3
#define TD_FRONTEND_RMS 4
#define TD_FRONTEND_MEAN_CROSSINGS 5
#define TD_FRONTEND_ZERO_CROSSINGS 6

#define TD_FRONTEND_OK 0
#define TD_FRONTEND_SCRATCH_TOO_SMALL (-1)
#define TD_FRONTEND_BAD_CONFIG (-2)

/* One block; a kind reads only its own fields. */
typedef struct {
    uint8_t kind;
    uint32_t steps; /* input steps */
    /* normalize */
    uint8_t log_scale;
    int32_t log_offset_q12;
    /* decimate */
    uint32_t factor;
    /* spectrum */
    uint32_t frame_length;
    uint8_t log2_length;
    uint32_t hop;
    uint32_t frames;
    uint32_t bands;
    uint32_t cepstra;
    uint8_t power_shift;
    uint8_t relative;            /* 1: each frame's bands less their mean, before the DCT */
    uint8_t pool;                /* 1: the frames' features averaged into one row */
    int32_t energy_offset_q12;
    const int16_t *window_q15;   /* [frame_length] periodic Hann */
    const int16_t *cos_q15;      /* [frame_length / 2] cos(2 pi k / n) */
    const uint16_t *band_first;  /* [bands] first FFT bin of each band */
    const uint16_t *band_count;  /* [bands] bins in each band */
    const uint16_t *band_offset; /* [bands] where each band's weights start */
    const uint16_t *band_weight; /* Q15 weights, 32768 = 1 */
    const int16_t *dct_q15;      /* [cepstra][bands] orthonormal DCT-II */
    /* stats */
    uint32_t segments;
    uint32_t segment_length;
    uint32_t n_stats;
    const uint8_t *stats;
} td_frontend_block;

typedef struct {
    uint32_t steps;
    uint32_t channels;
    float inverse_input_scale; /* float32(1 / input scale) */
    uint32_t n_blocks;
    const td_frontend_block *blocks;
    const uint16_t *log2_table; /* [256] round(log2(1 + i/256) * 4096) */
    uint32_t rows;              /* main features: rows x cols, then the extra rows */
    uint32_t cols;
    uint32_t extra_rows;        /* per-channel rows (normalize's log-scale) */
    uint8_t flatten;            /* 1: extra rows hold channels values each, no padding */
    uint32_t row_scales;        /* main row r has scale r % row_scales (one per statistic, else one) */
    int32_t zero_point;
    const int32_t *multiplier;  /* [row_scales + 1]: the main rows', then the extra rows' */
    const int8_t *shift;        /* [row_scales + 1] */
    uint32_t output_size;       /* features written */
} td_frontend_config;

/* Bytes of scratch td_frontend_features() and td_frontend_run() need for cfg. */
size_t td_frontend_scratch_bytes(const td_frontend_config *cfg);

/* samples[i] = round(window[i] / scale), halves away from zero, clipped to int16, NaN -> 0,
 * for cfg->steps * cfg->channels values. */
void td_frontend_quantize(const td_frontend_config *cfg, const float *window, int16_t *samples);

/* The features as int32 fixed point (real = q * the row's scale); cfg->output_size values.
 * scratch: scratch_bytes bytes (4-byte aligned by its type). Returns TD_FRONTEND_OK, or
 * TD_FRONTEND_SCRATCH_TOO_SMALL / TD_FRONTEND_BAD_CONFIG without touching features. */
int td_frontend_features(const td_frontend_config *cfg, const int16_t *samples, int32_t *features,
                         int32_t *scratch, size_t scratch_bytes);

/* The features as int8, quantised with the network input's scale and zero point. */
int td_frontend_run(const td_frontend_config *cfg, const int16_t *samples, int8_t *features,
                    int32_t *scratch, size_t scratch_bytes);

#ifdef __cplusplus
}
#endif

#endif /* TD_FRONTEND_H_ */
