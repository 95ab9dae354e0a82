/* The C engine's runner (td_runner.h): the generated model (td_model.c) on
 * static input and output buffers. Its arena is planned statically, so setup
 * never fails, except with model slots (TD_MODEL_PARTITION), where the running
 * slot's constants must be there to bind. */
#include <stdio.h>

#include "td_board.h"
#include "td_kernels.h"
#include "td_model.h"
#include "td_runner.h"
#ifdef TD_MODEL_PARTITION
#include "td_main_slots.h" /* the constants read in place from the model slot (render --model-partition) */
#endif

/* Aligned, so td_model_invoke copies them a word at a time. */
static union {
  int32_t align;
  int8_t bytes[TD_MODEL_INPUT_BYTES];
} input TD_ALIGN16;
static union {
  int32_t align;
  int8_t bytes[TD_MODEL_OUTPUT_BYTES];
} output TD_ALIGN16;

static int invoke(void *ctx) {
  (void)ctx;
  return td_model_invoke(input.bytes, output.bytes);
}

static size_t info(void *ctx, char *buf, size_t size) {
  char used[24];
  int n;
  (void)ctx;
  snprintf(used, sizeof(used), "%lu", (unsigned long)TD_MODEL_ARENA_BYTES);
  n = snprintf(buf, size, kInfoFormat, used, "null"); /* the static plan never fails to set up */
  return n < 0 ? 0 : (size_t)n;
}

#ifdef TD_PROFILE
/* layers%: one more inference with the clock stamped around every layer. */
static size_t profile(void *ctx, const uint64_t **durations) {
  static uint64_t each[TD_MODEL_LAYERS];
  size_t i;
  int failed;
  (void)ctx;
  td_profile_on = 1;
  failed = td_model_invoke(input.bytes, output.bytes);
  td_profile_on = 0;
  if (failed) return 0;
  for (i = 0; i < TD_MODEL_LAYERS; ++i) each[i] = td_profile_ticks[i + 1] - td_profile_ticks[i];
  *durations = each;
  return TD_MODEL_LAYERS;
}
#define TD_PROFILE_CALLBACK profile
#else
#define TD_PROFILE_CALLBACK NULL
#endif

const char *td_runner_setup(td_platform *platform, td_model_io *io) {
  platform->invoke = invoke;
  platform->info = info;
  platform->profile = TD_PROFILE_CALLBACK;
  io->input = input.bytes;
  io->input_size = sizeof(input.bytes);
  io->output = output.bytes;
  io->output_size = sizeof(output.bytes);
#ifdef TD_MODEL_PARTITION
  {
    static char error[112];
    uint32_t bytes = 0;
    const uint8_t *constants = td_model_slot_constants(&bytes);
    if (constants == NULL) return "no model slot can run (see the error printed at boot)";
    if (td_model_bind(constants, bytes) != 0) { /* the boot check compared the plans: a damaged slot */
      snprintf(error, sizeof(error), "the slot's C engine constants are %lu bytes, this firmware's plan reads %lu",
               (unsigned long)bytes, (unsigned long)TD_MODEL_CONSTANTS_BYTES);
      return error;
    }
  }
#endif
  return NULL;
}
