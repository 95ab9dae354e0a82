/* Whole-model runs on the emulated RV32 board for bench/cengine_unseen.py: replaces the
 * protocol firmware (td_main.c), runs the C engine on each of the samples in td_samples.h
 * (written by the script) and prints, per sample, the instructions retired by
 * td_model_invoke() (minstret under QEMU -icount: exact) and the output bytes in hex. */
#include <stdio.h>

#include "td_hal.h"
#include "td_model.h"
#include "td_samples.h"

static void write_hex(const int8_t *bytes, int count) {
  static const char digits[] = "0123456789abcdef";
  char pair[2];
  int i;
  for (i = 0; i < count; ++i) {
    pair[0] = digits[((uint8_t)bytes[i]) >> 4];
    pair[1] = digits[((uint8_t)bytes[i]) & 15];
    td_hal_write(pair, 2);
  }
}

void td_main(void) {
  static int8_t output[TD_MODEL_OUTPUT_BYTES];
  char line[64];
  int i, n;
  td_hal_init();
  for (i = 0; i < TD_SAMPLES; ++i) {
    const uint64_t start = td_hal_ticks();
    uint64_t spent;
    td_model_invoke(td_samples[i], output);
    spent = td_hal_ticks() - start;
    n = snprintf(line, sizeof(line), "run %d %lu ", i, (unsigned long)spent);
    td_hal_write(line, (size_t)n);
    write_hex(output, TD_MODEL_OUTPUT_BYTES);
    td_hal_write("\n", 1);
  }
  td_hal_write("done\n", 5);
  for (;;) {
  }
}
