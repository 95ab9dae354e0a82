/* tinydeploy's signal front end (td_frontend.h): integer arithmetic only, each function the
 * twin of one in tinydeploy/core/frontend.py, so device and reference agree byte for byte.
 * Sums, products and shifts are bounded in docs/frontend.md; no value here can overflow. */
#include "td_frontend.h"

#include <string.h>

#define TD_FE_LOG_BITS 12
#define TD_FE_NORM_BITS 9
#define TD_FE_Q15 15

/* floor(x / 2**n) for either sign: C99 leaves right shifts of negative values to the compiler. */
static int64_t td_fe_floor_shift(int64_t x, unsigned n)
{
    return x >= 0 ? x >> n : -((-(x + 1)) >> n) - 1;
}

/* floor((x + 2**(n-1)) / 2**n): halves round up (shift_round) */
static int64_t td_fe_shift_round(int64_t x, unsigned n)
{
    return td_fe_floor_shift(x + ((int64_t)1 << (n - 1)), n);
}

/* a / b to nearest, halves up, b > 0: floor((2a + b) / 2b) (div_round); C99 divides toward zero */
static int64_t td_fe_div_round(int64_t a, int64_t b)
{
    int64_t num = 2 * a + b, den = 2 * b, q = num / den;
    return (num % den != 0 && num < 0) ? q - 1 : q;
}

/* the same in 32 bits, for per-sample divisions (|a| < 2**29): no 64-bit division on RV32 */
static int32_t td_fe_div_round32(int32_t a, int32_t b)
{
    int32_t num = 2 * a + b, den = 2 * b, q = num / den;
    return (num % den != 0 && num < 0) ? q - 1 : q;
}

/* floor(sqrt(v)), bit by bit (isqrt) */
static uint32_t td_fe_isqrt(uint64_t v)
{
    uint64_t root = 0, bit = (uint64_t)1 << 62;
    while (bit > v) {
        bit >>= 2;
    }
    while (bit != 0) {
        if (v >= root + bit) {
            v -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return (uint32_t)root;
}

/* log2(v) in Q12, v = 0 read as 1: the leading bit's position plus the table's value for
 * the next 8 bits (log2_q12) */
static int32_t td_fe_log2_q12(uint64_t v, const uint16_t *table)
{
    static const unsigned steps[6] = {32, 16, 8, 4, 2, 1};
    int32_t p = 0;
    uint64_t rest;
    uint32_t mantissa;
    unsigned i;
    if (v == 0) {
        v = 1;
    }
    rest = v;
    for (i = 0; i < 6; i++) {
        if (rest >= ((uint64_t)1 << steps[i])) {
            p += (int32_t)steps[i];
            rest >>= steps[i];
        }
    }
    mantissa = (uint32_t)(p >= 8 ? v >> (p - 8) : v << (8 - p)) & 255u;
    return p * (1 << TD_FE_LOG_BITS) + (int32_t)table[mantissa];
}

/* zero_point + y * multiplier / 2**shift, rounded, saturated to int8 (requantize) */
static int8_t td_fe_requantize(int32_t y, int32_t multiplier, int32_t shift, int32_t zero_point)
{
    int64_t v = y, out;
    if (shift < 1) { /* a left shift: past |y| = 512 int8 saturates anyway */
        v = v > 512 ? 512 : (v < -512 ? -512 : v);
        v *= (int64_t)1 << (1 - shift);
        shift = 1;
    }
    out = td_fe_shift_round(v * multiplier, (unsigned)shift) + zero_point;
    return (int8_t)(out > 127 ? 127 : (out < -128 ? -128 : out));
}

static int16_t td_fe_clamp16(int32_t v)
{
    return (int16_t)(v > 32767 ? 32767 : (v < -32768 ? -32768 : v));
}

/* Where features go: int32 as they are, or int8 through each row's multiplier. */
typedef struct {
    const td_frontend_config *cfg;
    int32_t *q;
    int8_t *out;
} td_fe_sink;

/* value is features[index], whose row has the scale_index-th scale */
static void td_fe_emit(const td_fe_sink *sink, uint32_t scale_index, uint32_t index, int32_t value)
{
    if (sink->q != NULL) {
        sink->q[index] = value;
    } else {
        const td_frontend_config *cfg = sink->cfg;
        sink->out[index] = td_fe_requantize(value, cfg->multiplier[scale_index], cfg->shift[scale_index],
                                            cfg->zero_point);
    }
}

/* The time-domain blocks work in place on one int16 buffer: a copy of the window or, when the
 * chain starts by decimating, the decimated window. */
static uint32_t td_fe_buffered_steps(const td_frontend_config *cfg)
{
    int decimates_first = cfg->n_blocks > 0 && cfg->blocks[0].kind == TD_FRONTEND_DECIMATE;
    return decimates_first ? cfg->steps / cfg->blocks[0].factor : cfg->steps;
}

size_t td_frontend_scratch_bytes(const td_frontend_config *cfg)
{
    size_t bytes = 0;
    uint32_t i;
    int time_domain = 0;
    for (i = 0; i < cfg->n_blocks; i++) {
        const td_frontend_block *b = &cfg->blocks[i];
        if (b->kind == TD_FRONTEND_NORMALIZE || b->kind == TD_FRONTEND_DECIMATE) {
            time_domain = 1;
        } else if (b->kind == TD_FRONTEND_SPECTRUM) {
            uint32_t features = b->cepstra ? b->cepstra : b->bands;
            bytes += 4u * (2u * b->frame_length + (b->cepstra || b->relative ? b->bands : 0u));
            bytes += b->pool ? 8u * features : 0u;
        }
    }
    if (time_domain) {
        bytes += ((size_t)2 * td_fe_buffered_steps(cfg) * cfg->channels + 3u) / 4u * 4u;
    }
    return bytes + (size_t)4 * cfg->extra_rows * cfg->channels;
}

void td_frontend_quantize(const td_frontend_config *cfg, const float *window, int16_t *samples)
{
    uint32_t i, n = cfg->steps * cfg->channels;
    for (i = 0; i < n; i++) {
        /* volatile: the product is rounded to float32 before anything else touches it,
         * so no compiler fuses it into a multiply-add (ESP32's FPU has one) */
        volatile float v = window[i] * cfg->inverse_input_scale;
        float value = v;
        int32_t q;
        if (value != value) {
            q = 0;
        } else if (value >= 32767.0f) {
            q = 32767;
        } else if (value <= -32768.0f) {
            q = -32768;
        } else {
            float fraction;
            q = (int32_t)value; /* toward zero; the fraction below is exact in float32 */
            fraction = value - (float)q;
            q += fraction >= 0.5f ? 1 : (fraction <= -0.5f ? -1 : 0);
        }
        samples[i] = (int16_t)q;
    }
}

static void td_fe_normalize(const td_frontend_block *b, int16_t *x, uint32_t steps, uint32_t channels,
                            int32_t *extra, const uint16_t *table)
{
    uint32_t c, t;
    for (c = 0; c < channels; c++) {
        int64_t sum = 0, squares = 0;
        int32_t mean4, spread4;
        for (t = 0; t < steps; t++) {
            sum += x[t * channels + c];
        }
        mean4 = (int32_t)td_fe_div_round(16 * sum, steps);
        for (t = 0; t < steps; t++) {
            int64_t d4 = 16 * (int64_t)x[t * channels + c] - mean4;
            squares += d4 * d4;
        }
        spread4 = (int32_t)td_fe_isqrt((uint64_t)td_fe_div_round(squares, steps));
        for (t = 0; t < steps; t++) {
            int32_t d4 = 16 * (int32_t)x[t * channels + c] - mean4;
            int32_t y = spread4 > 0 ? td_fe_div_round32(d4 * (1 << TD_FE_NORM_BITS), spread4) : 0;
            x[t * channels + c] = td_fe_clamp16(y);
        }
        if (b->log_scale) {
            extra[c] = td_fe_log2_q12((uint64_t)(spread4 > 0 ? spread4 : 1), table) + b->log_offset_q12;
        }
    }
}

/* from x into y, which may be x: step t is written after steps t*factor.. are read */
static uint32_t td_fe_decimate(const td_frontend_block *b, const int16_t *x, int16_t *y, uint32_t steps,
                               uint32_t channels)
{
    uint32_t kept = steps / b->factor, t, c, j;
    for (t = 0; t < kept; t++) {
        for (c = 0; c < channels; c++) {
            int32_t sum = 0;
            for (j = 0; j < b->factor; j++) {
                sum += x[(t * b->factor + j) * channels + c];
            }
            y[t * channels + c] = (int16_t)td_fe_div_round32(sum, (int32_t)b->factor);
        }
    }
    return kept;
}

/* radix-2 decimation-in-time FFT in place, Q15 twiddles, no scaling between stages (fft_q15) */
static void td_fe_fft(int32_t *re, int32_t *im, uint32_t n, uint32_t bits, const int16_t *cos_q15)
{
    uint32_t i, half, quarter = n / 4;
    for (i = 0; i < n; i++) {
        uint32_t j = 0, k;
        for (k = 0; k < bits; k++) {
            j |= ((i >> k) & 1u) << (bits - 1 - k);
        }
        if (j > i) {
            int32_t tr = re[i], ti = im[i];
            re[i] = re[j];
            im[i] = im[j];
            re[j] = tr;
            im[j] = ti;
        }
    }
    for (half = 1; half < n; half <<= 1) {
        uint32_t step = n / (2 * half), group, j;
        for (group = 0; group < n; group += 2 * half) {
            for (j = 0; j < half; j++) {
                uint32_t k = j * step, a = group + j, b = a + half;
                int64_t cs = cos_q15[k];
                int64_t sn = cos_q15[k > quarter ? k - quarter : quarter - k]; /* sin(x) = cos(x - pi/2) */
                int32_t tr = (int32_t)td_fe_shift_round(re[b] * cs + im[b] * sn, TD_FE_Q15);
                int32_t ti = (int32_t)td_fe_shift_round(im[b] * cs - re[b] * sn, TD_FE_Q15);
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
    }
}

/* sums[i] += value: int64 sums kept in int32 scratch (4-byte aligned), read and written whole */
static void td_fe_accumulate(int32_t *sums, uint32_t i, int64_t value)
{
    int64_t sum;
    memcpy(&sum, sums + 2 * i, sizeof sum);
    sum += value;
    memcpy(sums + 2 * i, &sum, sizeof sum);
}

static void td_fe_spectrum(const td_frontend_config *cfg, const td_frontend_block *b, const int16_t *x,
                           uint32_t channels, int32_t *work, const td_fe_sink *sink)
{
    uint32_t n = b->frame_length, features = b->cepstra ? b->cepstra : b->bands, c, f, t, band, k;
    int keep = b->cepstra || b->relative; /* the frame's band values are changed before use */
    int32_t *re = work, *im = work + n, *logs = work + 2 * n;
    int32_t *sums = logs + (keep ? b->bands : 0u); /* [features] int64, when pooling */
    for (c = 0; c < channels; c++) {
        if (b->pool) {
            memset(sums, 0, 8u * features);
        }
        for (f = 0; f < b->frames; f++) {
            for (t = 0; t < n; t++) {
                int64_t v = x[(f * b->hop + t) * channels + c];
                re[t] = (int32_t)td_fe_shift_round(v * b->window_q15[t], TD_FE_Q15);
                im[t] = 0;
            }
            td_fe_fft(re, im, n, b->log2_length, b->cos_q15);
            for (band = 0; band < b->bands; band++) {
                uint64_t energy = 0;
                int32_t value;
                for (k = 0; k < b->band_count[band]; k++) {
                    uint32_t bin = b->band_first[band] + k;
                    uint64_t power = (uint64_t)((int64_t)re[bin] * re[bin]) + (uint64_t)((int64_t)im[bin] * im[bin]);
                    energy += (uint64_t)b->band_weight[b->band_offset[band] + k] * (power >> b->power_shift);
                }
                value = td_fe_log2_q12(energy, cfg->log2_table) + b->energy_offset_q12;
                if (keep) {
                    logs[band] = value;
                } else if (b->pool) {
                    td_fe_accumulate(sums, band, value);
                } else {
                    td_fe_emit(sink, 0, f * cfg->cols + c * b->bands + band, value);
                }
            }
            if (b->relative) {
                int64_t total = 0;
                int32_t mean;
                for (band = 0; band < b->bands; band++) {
                    total += logs[band];
                }
                mean = (int32_t)td_fe_div_round(total, b->bands);
                for (band = 0; band < b->bands; band++) {
                    logs[band] -= mean;
                }
            }
            for (k = 0; keep && k < features; k++) {
                int32_t value = logs[k];
                if (b->cepstra) {
                    int64_t acc = 0;
                    for (band = 0; band < b->bands; band++) {
                        acc += (int64_t)logs[band] * b->dct_q15[k * b->bands + band];
                    }
                    value = (int32_t)td_fe_shift_round(acc, TD_FE_Q15);
                }
                if (b->pool) {
                    td_fe_accumulate(sums, k, value);
                } else {
                    td_fe_emit(sink, 0, f * cfg->cols + c * features + k, value);
                }
            }
        }
        for (k = 0; b->pool && k < features; k++) {
            int64_t sum;
            memcpy(&sum, sums + 2 * k, sizeof sum);
            td_fe_emit(sink, 0, c * features + k, (int32_t)td_fe_div_round(sum, b->frames));
        }
    }
}

static uint32_t td_fe_crossings(const int16_t *x, uint32_t n, uint32_t channels, int32_t mean4)
{
    uint32_t t, count = 0;
    int previous = 16 * (int32_t)x[0] - mean4 >= 0;
    for (t = 1; t < n; t++) {
        int now = 16 * (int32_t)x[t * channels] - mean4 >= 0;
        count += (uint32_t)(now != previous);
        previous = now;
    }
    return count;
}

static void td_fe_stats(const td_frontend_config *cfg, const td_frontend_block *b, const int16_t *x,
                        uint32_t channels, const td_fe_sink *sink)
{
    uint32_t n = b->segment_length, s, c, t, i;
    for (s = 0; s < b->segments; s++) {
        for (c = 0; c < channels; c++) {
            const int16_t *seg = x + (size_t)s * n * channels + c;
            int64_t sum = 0, squares = 0, centred = 0;
            int32_t low = 32767, high = -32768, mean4;
            for (t = 0; t < n; t++) {
                int32_t v = seg[t * channels];
                sum += v;
                squares += (int64_t)v * v;
                low = v < low ? v : low;
                high = v > high ? v : high;
            }
            mean4 = (int32_t)td_fe_div_round(16 * sum, n);
            for (t = 0; t < n; t++) {
                int64_t d4 = 16 * (int64_t)seg[t * channels] - mean4;
                centred += d4 * d4;
            }
            for (i = 0; i < b->n_stats; i++) {
                uint32_t row = s * b->n_stats + i;
                int32_t value = 0;
                switch (b->stats[i]) {
                case TD_FRONTEND_MEAN: value = mean4; break;
                case TD_FRONTEND_STD: value = (int32_t)td_fe_isqrt((uint64_t)td_fe_div_round(centred, n)); break;
                case TD_FRONTEND_MIN: value = low; break;
                case TD_FRONTEND_MAX: value = high; break;
                case TD_FRONTEND_RMS: value = (int32_t)td_fe_isqrt((uint64_t)td_fe_div_round(256 * squares, n)); break;
                case TD_FRONTEND_MEAN_CROSSINGS:
                    value = n > 1 ? (int32_t)td_fe_div_round((int64_t)td_fe_crossings(seg, n, channels, mean4) << TD_FE_Q15,
                                                             n - 1) : 0;
                    break;
                case TD_FRONTEND_ZERO_CROSSINGS:
                    value = n > 1 ? (int32_t)td_fe_div_round((int64_t)td_fe_crossings(seg, n, channels, 0) << TD_FE_Q15,
                                                             n - 1) : 0;
                    break;
                default: break;
                }
                td_fe_emit(sink, i, row * cfg->cols + c, value);
            }
        }
    }
}

static int td_fe_execute(const td_frontend_config *cfg, const int16_t *samples, const td_fe_sink *sink,
                         int32_t *scratch, size_t scratch_bytes)
{
    size_t need;
    uint32_t steps, channels, i, c, e, first = 0, extras = 0, time_words = 0;
    int time_domain = 0, featured = 0;
    const int16_t *x = samples;
    int16_t *time_buffer = (int16_t *)scratch;
    int32_t *extra, *work;
    if (cfg == NULL || samples == NULL || (cfg->n_blocks > 0 && cfg->blocks == NULL) || cfg->log2_table == NULL) {
        return TD_FRONTEND_BAD_CONFIG;
    }
    need = td_frontend_scratch_bytes(cfg);
    if (scratch_bytes < need || (need > 0 && scratch == NULL)) {
        return TD_FRONTEND_SCRATCH_TOO_SMALL;
    }
    steps = cfg->steps;
    channels = cfg->channels;
    for (i = 0; i < cfg->n_blocks; i++) { /* every kind known before any feature is written */
        uint8_t kind = cfg->blocks[i].kind;
        if (kind < TD_FRONTEND_NORMALIZE || kind > TD_FRONTEND_STATS) {
            return TD_FRONTEND_BAD_CONFIG;
        }
        time_domain |= kind == TD_FRONTEND_NORMALIZE || kind == TD_FRONTEND_DECIMATE;
    }
    if (time_domain) {
        time_words = (2 * td_fe_buffered_steps(cfg) * channels + 3) / 4;
        if (cfg->blocks[0].kind == TD_FRONTEND_DECIMATE) {
            steps = td_fe_decimate(&cfg->blocks[0], samples, time_buffer, steps, channels);
            first = 1;
        } else {
            for (i = 0; i < steps * channels; i++) {
                time_buffer[i] = samples[i];
            }
        }
        x = time_buffer;
    }
    extra = scratch + time_words;
    work = extra + cfg->extra_rows * channels;
    for (i = first; i < cfg->n_blocks; i++) {
        const td_frontend_block *b = &cfg->blocks[i];
        switch (b->kind) {
        case TD_FRONTEND_NORMALIZE:
            td_fe_normalize(b, time_buffer, steps, channels, extra + extras * channels, cfg->log2_table);
            extras += b->log_scale ? 1u : 0u;
            break;
        case TD_FRONTEND_DECIMATE:
            steps = td_fe_decimate(b, time_buffer, time_buffer, steps, channels);
            break;
        case TD_FRONTEND_SPECTRUM:
            td_fe_spectrum(cfg, b, x, channels, work, sink);
            featured = 1;
            break;
        case TD_FRONTEND_STATS:
            td_fe_stats(cfg, b, x, channels, sink);
            featured = 1;
            break;
        default:
            break;
        }
    }
    if (!featured) { /* no feature block: the time-domain samples are the features */
        for (i = 0; i < steps * channels; i++) {
            td_fe_emit(sink, 0, i, x[i]);
        }
    }
    for (e = 0; e < cfg->extra_rows; e++) {
        if (cfg->flatten) {
            for (c = 0; c < channels; c++) {
                td_fe_emit(sink, cfg->row_scales, cfg->rows * cfg->cols + e * channels + c, extra[e * channels + c]);
            }
        } else {
            for (c = 0; c < cfg->cols; c++) { /* padded with zeros to a full row */
                td_fe_emit(sink, cfg->row_scales, (cfg->rows + e) * cfg->cols + c, c < channels ? extra[e * channels + c] : 0);
            }
        }
    }
    return TD_FRONTEND_OK;
}

int td_frontend_features(const td_frontend_config *cfg, const int16_t *samples, int32_t *features,
                         int32_t *scratch, size_t scratch_bytes)
{
    td_fe_sink sink;
    sink.cfg = cfg;
    sink.q = features;
    sink.out = NULL;
    return features == NULL ? TD_FRONTEND_BAD_CONFIG : td_fe_execute(cfg, samples, &sink, scratch, scratch_bytes);
}

int td_frontend_run(const td_frontend_config *cfg, const int16_t *samples, int8_t *features,
                    int32_t *scratch, size_t scratch_bytes)
{
    td_fe_sink sink;
    sink.cfg = cfg;
    sink.q = NULL;
    sink.out = features;
    if (features == NULL || cfg == NULL || cfg->multiplier == NULL || cfg->shift == NULL) {
        return TD_FRONTEND_BAD_CONFIG;
    }
    return td_fe_execute(cfg, samples, &sink, scratch, scratch_bytes);
}
