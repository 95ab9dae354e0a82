/* The duty-cycled firmware's main, in place of the protocol main (td_main.c):
 * classify, then sleep until the next period, for ever. It is what a battery
 * sensor runs, and what `tinydeploy render --duty-cycle-hz` builds so that the
 * energy tinydeploy estimates (docs/energy.md) can be measured on a board.
 *
 * Each cycle: the marker pin goes high, the input is filled (td_duty_input, a
 * weak hook a sensor's code replaces), the model runs, the marker goes low; one
 * line reports the class (m-duty-N-class-K-us-T, T the inference's time on the
 * platform's clock); then the board sleeps in TD_DUTY_SLEEP until the next
 * period. A power monitor integrates only where the marker is high.
 *
 * The rate, the sleep mode and the marker pin come from the generated
 * td_duty_config.h; the marker pin, the clock and sleeping from the platform
 * layer (td_hal.h); the model from the engine's runner (td_runner.h). In deep
 * sleep the chip boots again for every period: setup runs each time, and the
 * period counts from the start of setup (the boot ROM's and bootloader's time
 * before it adds to the period). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "td_board.h"
#include "td_duty_config.h"
#include "td_hal.h"
#include "td_runner.h"

static td_platform platform;
static td_model_io io;
static const char *setup_error;
static uint64_t due;        /* when the next inference is due, on td_hal_ticks' clock */
static unsigned long cycle; /* inferences since boot */

static void serial_write(void *ctx, const char *data, size_t len) {
  (void)ctx;
  td_hal_write(data, len);
}

static uint64_t ticks(void *ctx) {
  (void)ctx;
  return td_hal_ticks();
}

static void write_text(const char *text) { td_hal_write(text, strlen(text)); }

static void write_number(unsigned long long value) {
  char digits[24];
  size_t n = sizeof digits;
  do {
    digits[--n] = (char)('0' + value % 10);
    value /= 10;
  } while (value != 0 && n > 0);
  td_hal_write(digits + n, sizeof digits - n);
}

/* Fills the model's input before each inference. This default leaves zeros; a
 * sensor's code defines its own td_duty_input to read the sensor. */
__attribute__((weak)) void td_duty_input(int8_t *input, size_t size) { memset(input, 0, size); }

static size_t top_class(void) {
  size_t best = 0, i;
  for (i = 1; i < io.output_size; ++i)
    if (io.output[i] > io.output[best]) best = i;
  return best;
}

void td_main_setup(void) {
  due = td_hal_ticks(); /* the first inference at once; deep sleep: the period counts from here */
  td_hal_init();
  td_hal_marker_setup(TD_MARKER_GPIO);
  platform.ctx = NULL;
  platform.write = serial_write;
  platform.micros = ticks;
  io.name = kDeviceName;
  io.model = kModelName;
  setup_error = td_runner_setup(&platform, &io);
  if (setup_error != NULL) {
    write_text("e-[");
    write_text(setup_error);
    write_text("]\r\n");
  }
  write_text("m-duty-period-us-");
  write_number(TD_DUTY_PERIOD_US);
  write_text("-sleep-" TD_DUTY_SLEEP_NAME "\r\n");
}

/* One period: classify (unless the model could not be set up), report, sleep. */
static void duty_cycle(void) {
  uint64_t start, took, now;
  if (setup_error == NULL) {
    td_hal_marker(1);
    td_duty_input(io.input, io.input_size);
    start = td_hal_ticks();
    int failed = platform.invoke(platform.ctx);
    took = td_hal_ticks() - start;
    td_hal_marker(0);
    ++cycle;
    if (failed) {
      write_text("e-[invoke failed]\r\n");
    } else {
      write_text("m-duty-");
      write_number(cycle);
      write_text("-class-");
      write_number(top_class());
      write_text("-us-");
      write_number(took);
      write_text("\r\n");
    }
  }
  due += TD_DUTY_PERIOD_US;
  now = td_hal_ticks();
  /* (more than a period ahead: the clock wrapped, e.g. Arduino's 32-bit micros()) */
  if (now < due && due - now <= TD_DUTY_PERIOD_US) td_hal_sleep_us(due - now, TD_DUTY_SLEEP);
  else due = now; /* the period overran: the next one starts now, none is made up */
}

/* Arduino's loop(): one period a call. */
void td_main_run(void) { duty_cycle(); }

void td_main(void) {
  td_main_setup();
  for (;;) duty_cycle();
}
