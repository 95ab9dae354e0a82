/* Per-layer instruction counts on the emulated RV32 board: this replaces the
 * protocol firmware (td_main.c) in a -DTD_PROFILE build made by
 * bench/engines.py, runs one inference on a zero input and prints the
 * minstret difference across each layer, one "layer N COUNT" line each. */
#include <stdio.h>

#include "td_hal.h"
#include "td_model.h"

void td_main(void) {
  static int8_t input[TD_MODEL_INPUT_BYTES], output[TD_MODEL_OUTPUT_BYTES];
  char line[48];
  int i, n;
  td_hal_init();
  td_profile_on = 1;
  td_model_invoke(input, output);
  for (i = 0; i < TD_MODEL_LAYERS; ++i) {
    n = snprintf(line, sizeof(line), "layer %d %lu\n", i,
                 (unsigned long)(td_profile_ticks[i + 1] - td_profile_ticks[i]));
    td_hal_write(line, (size_t)n);
  }
  td_hal_write("done\n", 5);
  for (;;) {
  }
}
