/* Host harness for the protocol core: serial on stdin/stdout, a fake model
 * whose output[i] is the sum of the input bytes plus i (wrapping), a fake
 * clock that advances 7 us per invoke. `--not-ready` starts as after a failed
 * setup; `--fail-at K` makes the K-th invoke (and every later one) fail.
 * Compiled by tests/test_protocol.py. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_protocol.h"

static int8_t input[4];
static int8_t output[3];
static uint64_t clock_us = 1000;
static unsigned long invokes = 0, fail_at = 0; /* 0: never fail */

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
  if (fail_at != 0 && ++invokes >= fail_at) return 1;
  for (i = 0; i < sizeof(input); ++i) sum += input[i];
  for (i = 0; i < sizeof(output); ++i) output[i] = (int8_t)(sum + (int)i);
  clock_us += 7;
  return 0;
}

static uint64_t durations[3];

/* Three fake layers, each a run of the fake model's clock plus the first input byte. */
static size_t host_profile(void *ctx, const uint64_t **out) {
  size_t i;
  if (host_invoke(ctx) != 0) return 0;
  for (i = 0; i < 3; ++i) durations[i] = (uint64_t)(i + 1) * 7 + (uint8_t)input[0];
  *out = durations;
  return 3;
}

static size_t host_info(void *ctx, char *buf, size_t size) {
  (void)ctx;
  return (size_t)snprintf(buf, size, "{\"arena_bytes\":2048,\"board\":\"host\"}");
}

int main(int argc, char **argv) {
  td_platform platform = {NULL, host_write, host_micros, host_invoke, host_info, host_profile};
  td_model_io io = {input, sizeof(input), output, sizeof(output), "host", "fake"};
  td_protocol protocol;
  int c, i, ready = 1;
  for (i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--no-profile") == 0) platform.profile = NULL;
    if (strcmp(argv[i], "--not-ready") == 0) ready = 0;
    if (strcmp(argv[i], "--fail-at") == 0 && i + 1 < argc) fail_at = strtoul(argv[++i], NULL, 10);
  }
  td_protocol_init(&protocol, &platform, &io, ready);
  if (!ready) td_protocol_error(&protocol, "arena allocation failed: requested 2048 bytes");
  td_protocol_boot(&protocol);
  while ((c = getchar()) != EOF) td_protocol_feed(&protocol, c);
  return 0;
}
