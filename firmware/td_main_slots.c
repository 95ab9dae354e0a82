/* See td_main_slots.h. */
#include "td_main_slots.h"

#include <stddef.h>

#include "td_slots.h"

extern const td_contract td_firmware_contract; /* generated: td_contract.c */

static td_slots slots;
static int (*runner_invoke)(void *ctx);
static size_t (*runner_info)(void *ctx, char *buf, size_t size);
static int first_done;

const uint8_t *td_model_slot_data(void) { return td_slots_model(&slots); }

const uint8_t *td_model_slot_constants(uint32_t *bytes) { return td_slots_constants(&slots, bytes); }

const char *td_main_slots_boot(void) { return td_slots_boot(&slots, &td_firmware_contract) ? NULL : slots.message; }

static int invoke(void *ctx) {
  int failed = runner_invoke(ctx);
  if (!first_done) {
    first_done = 1;
    td_slots_first_inference(&slots, failed);
  }
  return failed;
}

static size_t info(void *ctx, char *buf, size_t size) { return td_slots_info(&slots, buf, runner_info(ctx, buf, size), size); }

td_slots *td_main_slots(void) { return &slots; }

void td_main_slots_wrap(td_platform *platform) {
  runner_invoke = platform->invoke;
  platform->invoke = invoke;
  runner_info = platform->info;
  platform->info = info;
}

void td_main_slots_attach(td_platform *platform, td_protocol *protocol) {
  td_main_slots_wrap(platform);
  td_protocol_set_extension(protocol, td_slots_command, td_slots_byte, &slots);
  if (slots.message[0] && slots.running) td_protocol_error(protocol, slots.message); /* a slot refused, another runs */
}
