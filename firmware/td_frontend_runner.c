/* The front end between the protocol and the model (td_frontend_runner.h). */
#include "td_frontend_runner.h"

#include <stddef.h>
#include <stdint.h>

#include "td_frontend_config.h"

/* The raw window as received: int16 samples; the protocol writes its bytes in order, so a
 * little-endian CPU (ESP32, ESP32-C3, RV32) reads the wire's little-endian samples. */
static union {
  int32_t align;
  int16_t samples[TD_FRONTEND_CFG_STEPS * TD_FRONTEND_CFG_CHANNELS];
} window;
static int32_t scratch[TD_FRONTEND_CFG_SCRATCH_WORDS];
static td_platform engine; /* the engine's own callbacks */
static int8_t *features;   /* the engine's input: the front end writes the model's int8 input there */

static int invoke(void *ctx) {
  if (td_frontend_run(&td_frontend_cfg, window.samples, features, scratch, sizeof(scratch)) != TD_FRONTEND_OK) {
    return -1;
  }
  return engine.invoke(ctx);
}

/* layers%: the front end runs first, untimed; the layers are the model's. */
static size_t profile(void *ctx, const uint64_t **durations) {
  if (td_frontend_run(&td_frontend_cfg, window.samples, features, scratch, sizeof(scratch)) != TD_FRONTEND_OK) {
    return 0;
  }
  return engine.profile(ctx, durations);
}

const char *td_frontend_setup(td_platform *platform, td_model_io *io, const char *error) {
  const uint16_t one = 1;
  size_t model_input = io->input_size;
  io->input_size = sizeof(window.samples);
  if (error != NULL) {
    io->input = NULL;
    return error;
  }
  if (*(const uint8_t *)&one != 1) error = "the front end reads little-endian samples; this CPU is big-endian";
  else if (model_input != TD_FRONTEND_CFG_OUTPUT_SIZE) error = "the front end's features do not fill the model's input";
  else if (td_frontend_scratch_bytes(&td_frontend_cfg) > sizeof(scratch)) error = "the front end needs more scratch";
  if (error != NULL) {
    io->input = NULL;
    return error;
  }
  engine = *platform;
  features = io->input;
  platform->invoke = invoke;
  platform->profile = engine.profile != NULL ? profile : NULL;
  io->input = (int8_t *)window.samples;
  return NULL;
}
