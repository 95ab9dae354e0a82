/* The firmware's main, the same for every engine and platform: the protocol
 * core on the platform's serial port and clock (td_hal.h), driving the engine's
 * model (td_runner.h), behind the model's front end where it has one (the generated
 * td_board.h then defines TD_FRONTEND: td_frontend_runner.h). The board's strings
 * come from the generated td_board.h. */
#include <stddef.h>

#include "td_board.h"
#include "td_hal.h"
#include "td_protocol.h"
#include "td_runner.h"
#ifdef TD_FRONTEND
#include "td_frontend_runner.h"
#endif
#ifdef TD_MODEL_PARTITION
#include "td_main_slots.h" /* the model in flash slots (render --model-partition) */
#endif

static td_platform platform;
static td_protocol protocol;

static void serial_write(void *ctx, const char *data, size_t len) {
  (void)ctx;
  td_hal_write(data, len);
}

static uint64_t ticks(void *ctx) {
  (void)ctx;
  return td_hal_ticks();
}

void td_main_setup(void) {
  td_model_io io = {NULL, 0, NULL, 0, NULL, NULL};
  const char *error;
  td_hal_init();
  platform.ctx = NULL;
  platform.write = serial_write;
  platform.micros = ticks;
  io.name = kDeviceName;
  io.model = kModelName;
#ifdef TD_MODEL_PARTITION
  {
    const char *slot_error = td_main_slots_boot(); /* before the runner: it reads the model from the slot */
    error = td_runner_setup(&platform, &io);
    if (slot_error != NULL) error = slot_error;
  }
#else
  error = td_runner_setup(&platform, &io);
#endif
#ifdef TD_FRONTEND
  error = td_frontend_setup(&platform, &io, error);
#endif
  td_protocol_init(&protocol, &platform, &io, error == NULL);
#ifdef TD_MODEL_PARTITION
  td_main_slots_attach(&platform, &protocol);
#endif
  if (error != NULL) td_protocol_error(&protocol, error);
  td_protocol_boot(&protocol);
}

void td_main_run(void) {
  int byte;
  while ((byte = td_hal_read()) >= 0) td_protocol_feed(&protocol, byte);
}

void td_main(void) {
  td_main_setup();
  td_main_run();
}
