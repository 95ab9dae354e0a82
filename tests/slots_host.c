/* The model slots (firmware/td_slots.c) and the protocol core on the host: flash partitions are
 * files in a folder, laid out as tinydeploy/device/slots.py's FileFlash keeps them, so a test
 * runs the same upload on both and compares the serial output and the flash byte for byte.
 *
 * usage: slots_host FOLDER SLOT_BYTES OPS ARENA KERNELS INPUT OUTPUT < script
 *   OPS comma-separated, INPUT and OUTPUT as 1x32x32x1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "td_protocol.h"
#include "td_slots.h"

static const char *folder;
static uint32_t slot_bytes;
static int restart_requested;

static const char *part_path(int part) {
  static char path[4096];
  static const char *const names[] = {"td_state", "model_a", "model_b"};
  snprintf(path, sizeof(path), "%s/%s.bin", folder, names[part]);
  return path;
}

uint32_t td_flash_size(int part) { return part == TD_PART_STATE ? 2 * TD_SECTOR : slot_bytes; }

int td_flash_read(int part, uint32_t offset, void *data, size_t count) {
  FILE *f = fopen(part_path(part), "rb");
  size_t got;
  if (f == NULL || offset + count > td_flash_size(part)) {
    if (f) fclose(f);
    return -1;
  }
  fseek(f, (long)offset, SEEK_SET);
  got = fread(data, 1, count, f);
  fclose(f);
  return got == count ? 0 : -1;
}

int td_flash_erase(int part, uint32_t offset, size_t count) {
  FILE *f = fopen(part_path(part), "r+b");
  size_t i;
  if (f == NULL || offset + count > td_flash_size(part)) {
    if (f) fclose(f);
    return -1;
  }
  fseek(f, (long)offset, SEEK_SET);
  for (i = 0; i < count; ++i) fputc(0xFF, f);
  fclose(f);
  return 0;
}

int td_flash_write(int part, uint32_t offset, const void *data, size_t count) {
  unsigned char old[TD_MAX_CHUNK];
  const unsigned char *bytes = (const unsigned char *)data;
  size_t done = 0;
  while (done < count) { /* NOR flash: writing only clears bits */
    size_t n = count - done < sizeof(old) ? count - done : sizeof(old), i;
    FILE *f;
    if (td_flash_read(part, (uint32_t)(offset + done), old, n) != 0) return -1;
    for (i = 0; i < n; ++i) old[i] &= bytes[done + i];
    f = fopen(part_path(part), "r+b");
    if (f == NULL) return -1;
    fseek(f, (long)(offset + done), SEEK_SET);
    fwrite(old, 1, n, f);
    fclose(f);
    done += n;
  }
  return 0;
}

const uint8_t *td_flash_map(int part) {
  (void)part;
  return NULL;
}

void td_flash_restart(void) { restart_requested = 1; }

static td_slots slots;

static void serial_write(void *ctx, const char *data, size_t len) {
  (void)ctx;
  fwrite(data, 1, len, stdout);
}

static uint64_t micros(void *ctx) {
  (void)ctx;
  return 0;
}

static int invoke(void *ctx) {
  (void)ctx;
  return 0;
}

/* A runner's info line for the model it was built with, then told about the slot (td_slots_info). */
static size_t info(void *ctx, char *buf, size_t size) {
  int n;
  (void)ctx;
  n = snprintf(buf, size, "{\"arena_used_bytes\":1,\"model_sha256\":\"%064d\",\"model_bytes\":99,\"board\":\"host\"}", 0);
  return td_slots_info(&slots, buf, n < 0 ? 0 : (size_t)n, size);
}

static int parse_dims(const char *text, int32_t *dims) {
  int rank = 0;
  while (*text && rank < 4) {
    dims[rank++] = (int32_t)strtol(text, (char **)&text, 10);
    if (*text == 'x') ++text;
  }
  return rank;
}

int main(int argc, char **argv) {
  static const char *ops[64];
  static char op_text[2048];
  static int8_t input[4096], output[64];
  td_contract contract;
  td_platform platform = {NULL, serial_write, micros, invoke, info, NULL};
  td_protocol protocol;
  td_model_io io = {input, 4, output, 2, "host", "slots"};
  char *op;
  int c;
  if (argc != 8) {
    fprintf(stderr, "usage: slots_host FOLDER SLOT_BYTES OPS ARENA KERNELS INPUT OUTPUT < script\n");
    return 2;
  }
  folder = argv[1];
  slot_bytes = (uint32_t)strtoul(argv[2], NULL, 10);
  memset(&contract, 0, sizeof(contract));
  snprintf(op_text, sizeof(op_text), "%s", argv[3]);
  for (op = strtok(op_text, ","); op != NULL && contract.op_count < 64; op = strtok(NULL, ",")) ops[contract.op_count++] = op;
  contract.ops = ops;
  contract.arena_bytes = (uint32_t)strtoul(argv[4], NULL, 10);
  contract.kernels = argv[5];
  contract.input_rank = (uint8_t)parse_dims(argv[6], contract.input_dims);
  contract.output_rank = (uint8_t)parse_dims(argv[7], contract.output_dims);
  do { /* boot, and again after each commit */
    restart_requested = 0;
    td_slots_boot(&slots, &contract);
    td_protocol_init(&protocol, &platform, &io, slots.running != 0);
    td_protocol_set_extension(&protocol, td_slots_command, td_slots_byte, &slots);
    if (slots.message[0]) td_protocol_error(&protocol, slots.message);
    td_protocol_boot(&protocol);
    while (!restart_requested && (c = getchar()) != EOF) td_protocol_feed(&protocol, c);
  } while (restart_requested);
  return 0;
}
