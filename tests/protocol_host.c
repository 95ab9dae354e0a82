/* Host harness for the protocol core: serial on stdin/stdout, a fake model
 * whose output[i] is the sum of the input bytes plus i (wrapping), a fake
 * clock that advances 7 us per invoke. Compiled by tests/test_firmware.py. */
#include <stdio.h>
#include <string.h>

#include "td_protocol.h"

static int8_t input[4];
static int8_t output[3];
static uint64_t clock_us = 1000;

static void host_write(void *ctx, const char *data, size_t len) {
  (void)ctx;
  fwrite(data, 1, len, stdout);
  fflush(stdout);
}

static uint64_t host_micros(void *ctx) {
  (void)ctx;
  return clock_us;
}

static int host_invoke(void *ctx) {
  int sum = 0;
  size_t i;
  (void)ctx;
  for (i = 0; i < sizeof(input); ++i) sum += input[i];
  for (i = 0; i < sizeof(output); ++i) output[i] = (int8_t)(sum + (int)i);
  clock_us += 7;
  return 0;
}

static size_t host_info(void *ctx, char *buf, size_t size) {
  (void)ctx;
  return (size_t)snprintf(buf, size, "{\"arena_bytes\":2048,\"board\":\"host\"}");
}

int main(int argc, char **argv) {
  td_platform platform = {NULL, host_write, host_micros, host_invoke, host_info};
  td_model_io io = {input, sizeof(input), output, sizeof(output), "host", "fake"};
  td_protocol protocol;
  int c, ready = !(argc > 1 && strcmp(argv[1], "--not-ready") == 0);
  td_protocol_init(&protocol, &platform, &io, ready);
  if (!ready) td_protocol_error(&protocol, "arena allocation failed: requested 2048 bytes");
  td_protocol_boot(&protocol);
  while ((c = getchar()) != EOF) td_protocol_feed(&protocol, c);
  return 0;
}
