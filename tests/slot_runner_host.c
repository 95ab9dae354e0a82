/* A stand-in runner (td_runner.h) for the host build of a --model-partition ESP-IDF project
 * without TFLM: it reads the model in place from the running slot (td_model_slot_data, the
 * mmap'd partition) and answers, for output i, the sum of the input bytes and of the model's
 * first 4096 bytes, plus i (mod 256), so the outputs show which model the slot holds. The rest is the rendered
 * project's own sources: td_main.c, td_main_slots.c, td_slots.c, hal_espidf(_slots).c. */
#include <stdio.h>

#include "td_board.h"
#include "td_main_slots.h"
#include "td_runner.h"

static int8_t input[1024];
static int8_t output[10];
static const uint8_t *model;

static int invoke(void *ctx) {
  unsigned sum = 0, i;
  (void)ctx;
  for (i = 0; i < sizeof(input); ++i) sum += (unsigned)(uint8_t)input[i];
  for (i = 0; i < 4096; ++i) sum += model[i]; /* the model, read in place */
  for (i = 0; i < sizeof(output); ++i) output[i] = (int8_t)(uint8_t)(sum + i);
  return 0;
}

static size_t info(void *ctx, char *buf, size_t size) {
  int n;
  (void)ctx;
  n = snprintf(buf, size, kInfoFormat, "1", "null");
  return n < 0 ? 0 : (size_t)n;
}

const char *td_runner_setup(td_platform *platform, td_model_io *io) {
  platform->invoke = invoke;
  platform->info = info;
  platform->profile = NULL;
  io->input_size = sizeof(input);
  io->output_size = sizeof(output);
  model = td_model_slot_data();
  if (model == NULL) return "no model slot can run";
  io->input = input;
  io->output = output;
  return NULL;
}
