/* Model slots: boot check, A/B state with rollback, serial upload. See td_slots.h and
 * docs/model-update.md; the image and state layouts are tinydeploy/core/image.py's. The
 * messages are word for word those of tinydeploy/device/slots.py (a test compares them). */
#include "td_slots.h"

#include <stdio.h>
#include <string.h>

#define STATE_BYTES 16
#define NO_SLOT 0xFF
#define CRC_OFFSET 24
#define OP_NAME_BYTES 32
#define ARENA_ENTRY_BYTES 28

static const uint8_t kMagic[8] = {'T', 'D', 'M', 'O', 'D', 'E', 'L', 0};
static const uint8_t kStateMagic[4] = {'T', 'D', 'A', 'B'};

uint32_t td_crc32(uint32_t crc, const void *data, size_t count) {
  const uint8_t *bytes = (const uint8_t *)data;
  size_t i;
  int bit;
  crc = ~crc;
  for (i = 0; i < count; ++i) {
    crc ^= bytes[i];
    for (bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static uint32_t u32_at(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static char slot_name(int part) { return part == TD_PART_A ? 'a' : 'b'; }
static int other(int part) { return part == TD_PART_A ? TD_PART_B : TD_PART_A; }

/* A count with thousands separators, as Python's "{:,}". */
static const char *grouped(char *buf, size_t size, unsigned long value) {
  char digits[24];
  int n = snprintf(digits, sizeof(digits), "%lu", value), i, o = 0;
  for (i = 0; i < n && (size_t)o + 2 < size; ++i) {
    if (i > 0 && (n - i) % 3 == 0) buf[o++] = ',';
    buf[o++] = digits[i];
  }
  buf[o] = '\0';
  return buf;
}

/* Appends printf-style text to message, as far as it fits. */
static void append(char *message, size_t size, const char *text) {
  size_t used = strlen(message);
  if (used + 1 < size) snprintf(message + used, size - used, "%s", text);
}

static void dims_text(char *buf, size_t size, const int32_t *dims, unsigned rank) {
  unsigned i;
  char one[16];
  buf[0] = '\0';
  if (rank == 0) append(buf, size, "scalar");
  for (i = 0; i < rank; ++i) {
    snprintf(one, sizeof(one), i ? "x%ld" : "%ld", (long)dims[i]);
    append(buf, size, one);
  }
}

/* The contract check: every reason, "; "-joined, in image.problems' order. */
static int contract_problems(const td_contract *c, int part, const uint8_t *fixed, uint32_t constants_bytes, char *out,
                             size_t size) {
  uint32_t op_count = u32_at(fixed + 148), arena_count = u32_at(fixed + 28), i;
  uint32_t need = 0, at = TD_IMAGE_FIXED;
  int have_need = 0, found = 0;
  char text[96], a[24], b[24];
  uint8_t entry[OP_NAME_BYTES];
  out[0] = '\0';
#define TD_ADD(t) do { if (found++) append(out, size, "; "); append(out, size, (t)); } while (0)
  for (i = 0; i < op_count; ++i, at += OP_NAME_BYTES) {
    size_t k;
    int registered = 0;
    if (td_flash_read(part, at, entry, OP_NAME_BYTES) != 0) return -1;
    entry[OP_NAME_BYTES - 1] = 0;
    for (k = 0; k < c->op_count; ++k) registered |= strcmp((const char *)entry, c->ops[k]) == 0;
    if (!registered) {
      snprintf(text, sizeof(text), "op %s not registered", (const char *)entry);
      TD_ADD(text);
    }
  }
  if (c->plan_sha256 != NULL) {
    static const char hex[] = "0123456789abcdef";
    char mine[13], theirs[13];
    int k, zero = 1;
    for (k = 0; k < 32; ++k) zero &= fixed[156 + k] == 0;
    for (k = 0; k < 6; ++k) {
      mine[2 * k] = hex[fixed[156 + k] >> 4];
      mine[2 * k + 1] = hex[fixed[156 + k] & 15];
      theirs[2 * k] = hex[c->plan_sha256[k] >> 4];
      theirs[2 * k + 1] = hex[c->plan_sha256[k] & 15];
    }
    mine[12] = theirs[12] = '\0';
    if (zero || memcmp(fixed + 156, c->plan_sha256, 32) != 0) {
      snprintf(text, sizeof(text), "plan %s != the firmware's %s", zero ? "none" : mine, theirs);
      TD_ADD(text);
      append(out, size, " (the C engine keeps its code: only a model with the same layers and shapes fits)");
    } else if (constants_bytes == 0) {
      TD_ADD("the image holds no C engine constants (image format 2 does: package the model again)");
    }
    need = u32_at(fixed + 188);
    have_need = need != 0;
  } else {
    const char *kernels = c->kernels ? c->kernels : "reference";
    char names[96] = "";
    uint8_t arena[ARENA_ENTRY_BYTES];
    for (i = 0; i < arena_count; ++i, at += ARENA_ENTRY_BYTES) {
      if (td_flash_read(part, at, arena, ARENA_ENTRY_BYTES) != 0) return -1;
      arena[23] = 0;
      if (i) append(names, sizeof(names), ", ");
      append(names, sizeof(names), (const char *)arena);
      if (strcmp((const char *)arena, kernels) == 0) {
        need = u32_at(arena + 24);
        have_need = 1;
      }
    }
    if (!have_need) {
      if (found++) append(out, size, "; ");
      append(out, size, "the image has no arena figure for the ");
      append(out, size, kernels);
      append(out, size, " kernels (it has: ");
      append(out, size, names[0] ? names : "none");
      append(out, size, ")");
    }
  }
  if (have_need && need > c->arena_bytes) {
    snprintf(text, sizeof(text), "needs %s B of arena, firmware has %s", grouped(a, sizeof(a), need),
             grouped(b, sizeof(b), c->arena_bytes));
    TD_ADD(text);
  }
  {
    const struct { const char *role; unsigned rank; const uint8_t *dims; const int32_t *want; unsigned want_rank; } io[2] = {
        {"input", fixed[96], fixed + 100, c->input_dims, c->input_rank},
        {"output", fixed[97], fixed + 116, c->output_dims, c->output_rank}};
    int r;
    for (r = 0; r < 2; ++r) {
      int32_t dims[4];
      unsigned k;
      int same = io[r].rank == io[r].want_rank;
      for (k = 0; k < 4; ++k) dims[k] = (int32_t)u32_at(io[r].dims + 4 * k);
      for (k = 0; same && k < io[r].rank; ++k) same = dims[k] == io[r].want[k];
      if (!same) {
        char got[48], want[48];
        dims_text(got, sizeof(got), dims, io[r].rank);
        dims_text(want, sizeof(want), io[r].want, io[r].want_rank);
        if (found++) append(out, size, "; ");
        append(out, size, io[r].role);
        append(out, size, " ");
        append(out, size, got);
        append(out, size, " != ");
        append(out, size, want);
      }
    }
  }
#undef TD_ADD
  return found;
}

int td_slots_check(const td_contract *contract, int part, td_image_info *info, char *message, size_t size) {
  uint8_t fixed[TD_IMAGE_FIXED];
  uint8_t block[256];
  char where[8], a[24], b[24], problems[TD_MESSAGE_BYTES];
  uint32_t format, header_bytes, image_bytes, model_bytes, op_count, arena_count, json_bytes, crc, offset;
  uint32_t constants_at = 0, constants_bytes = 0;
  int k;
  snprintf(where, sizeof(where), "slot %c", slot_name(part));
  message[0] = '\0';
  if (td_flash_read(part, 0, fixed, sizeof(fixed)) != 0) {
    snprintf(message, size, "%s: flash read failed", where);
    return -1;
  }
  for (k = 0; k < 8 && fixed[k] == 0xFF; ++k) {
  }
  if (k == 8) {
    snprintf(message, size, "%s is empty", where);
    return -1;
  }
  if (memcmp(fixed, kMagic, 8) != 0) {
    snprintf(message, size, "%s: not a tinydeploy model image (bad magic: starts with ", where);
    for (k = 0; k < 8; ++k) {
      char hex[3];
      snprintf(hex, sizeof(hex), "%02x", fixed[k]);
      append(message, size, hex);
    }
    append(message, size, ", expected 54444d4f44454c00); make one with `tinydeploy package MODEL --version X --out "
                          "model.bin`");
    return -1;
  }
  format = (uint32_t)fixed[8] | ((uint32_t)fixed[9] << 8);
  if (format > TD_IMAGE_FORMAT) {
    snprintf(message, size, "%s: image format %lu was made by a newer tinydeploy (this one reads format %d and "
             "older); update tinydeploy, or package the model with this one", where, (unsigned long)format,
             TD_IMAGE_FORMAT);
    return -1;
  }
  if (format < 1) {
    snprintf(message, size, "%s: image format %lu is not a format tinydeploy ever wrote", where,
             (unsigned long)format);
    return -1;
  }
  header_bytes = u32_at(fixed + 12);
  image_bytes = u32_at(fixed + 16);
  model_bytes = u32_at(fixed + 20);
  crc = u32_at(fixed + CRC_OFFSET);
  arena_count = u32_at(fixed + 28);
  op_count = u32_at(fixed + 148);
  json_bytes = u32_at(fixed + 152);
  if (header_bytes <= image_bytes && model_bytes <= image_bytes - header_bytes) {
    /* format 2: the C engine's constants after the model, 16-byte aligned, to the image's end */
    constants_at = header_bytes + (model_bytes + 15u) / 16u * 16u;
    if (format >= 2 && image_bytes > header_bytes + model_bytes && image_bytes > constants_at) {
      constants_bytes = image_bytes - constants_at;
    }
  }
  if (header_bytes % 16 != 0 || op_count > 4096 || arena_count > 4096 || json_bytes > 0x100000 ||
      header_bytes < TD_IMAGE_FIXED + op_count * OP_NAME_BYTES + arena_count * ARENA_ENTRY_BYTES + json_bytes ||
      (image_bytes != header_bytes + model_bytes && constants_bytes == 0) || fixed[96] > 4 || fixed[97] > 4) {
    snprintf(message, size, "%s: inconsistent header (header %lu B, image %lu B, model %lu B, %lu operators, %lu "
             "arena entries)", where, (unsigned long)header_bytes, (unsigned long)image_bytes,
             (unsigned long)model_bytes, (unsigned long)op_count, (unsigned long)arena_count);
    return -1;
  }
  if (image_bytes > td_flash_size(part)) {
    snprintf(message, size, "%s: the image's %s B exceed the slot's %s", where, grouped(a, sizeof(a), image_bytes),
             grouped(b, sizeof(b), td_flash_size(part)));
    return -1;
  }
  {
    uint32_t actual = 0;
    for (offset = 0; offset < image_bytes; offset += sizeof(block)) {
      uint32_t count = image_bytes - offset < sizeof(block) ? image_bytes - offset : (uint32_t)sizeof(block);
      if (td_flash_read(part, offset, block, count) != 0) {
        snprintf(message, size, "%s: flash read failed", where);
        return -1;
      }
      if (offset == 0) memset(block + CRC_OFFSET, 0, 4); /* the CRC covers the image with its own field zero */
      actual = td_crc32(actual, block, count);
    }
    if (actual != crc) {
      snprintf(message, size, "%s: bad checksum: CRC-32 0x%08lx, the header says 0x%08lx (the image is corrupt)",
               where, (unsigned long)actual, (unsigned long)crc);
      return -1;
    }
  }
  if (contract_problems(contract, part, fixed, constants_bytes, problems, sizeof(problems)) != 0) {
    snprintf(message, size, "%s (model %.31s) does not fit the firmware: %s", where, (const char *)fixed + 64,
             problems);
    return -1;
  }
  info->header_bytes = header_bytes;
  info->image_bytes = image_bytes;
  info->model_bytes = model_bytes;
  info->constants_offset = constants_bytes ? constants_at : 0;
  info->constants_bytes = constants_bytes;
  info->crc = crc;
  memcpy(info->sha256, fixed + 32, 32);
  memcpy(info->version, fixed + 64, 31);
  info->version[31] = '\0';
  return 0;
}

/* -- the A/B state ------------------------------------------------------------------------ */

typedef struct state {
  uint32_t sequence;
  int active, trial, last_good; /* slots as TD_PART_A/B; last_good 0 when none */
} state;

static int read_record(int sector, state *out) {
  uint8_t raw[STATE_BYTES];
  if (td_flash_read(TD_PART_STATE, (uint32_t)sector * TD_SECTOR, raw, sizeof(raw)) != 0) return 0;
  if (memcmp(raw, kStateMagic, 4) != 0 || u32_at(raw + 12) != td_crc32(0, raw, 12) || raw[8] > 1 || raw[9] > 1 ||
      (raw[10] > 1 && raw[10] != NO_SLOT))
    return 0;
  out->sequence = u32_at(raw + 4);
  out->active = raw[8] ? TD_PART_B : TD_PART_A;
  out->trial = raw[9];
  out->last_good = raw[10] == NO_SLOT ? 0 : (raw[10] ? TD_PART_B : TD_PART_A);
  return 1;
}

/* The state that holds (0 when none), and the sector the next record goes to. */
static int current_state(state *out, int *next_sector) {
  state s0, s1;
  int v0 = read_record(0, &s0), v1 = read_record(1, &s1);
  if (v0 && (!v1 || s0.sequence >= s1.sequence)) {
    *out = s0;
    *next_sector = 1;
    return 1;
  }
  if (v1) {
    *out = s1;
    *next_sector = 0;
    return 1;
  }
  *next_sector = 0;
  return 0;
}

static int write_state(uint32_t sequence, int active, int trial, int last_good) {
  uint8_t raw[STATE_BYTES];
  state ignored;
  int sector;
  current_state(&ignored, &sector);
  memcpy(raw, kStateMagic, 4);
  put_u32(raw + 4, sequence);
  raw[8] = (uint8_t)(active == TD_PART_B);
  raw[9] = (uint8_t)(trial != 0);
  raw[10] = last_good ? (uint8_t)(last_good == TD_PART_B) : NO_SLOT;
  raw[11] = 0;
  put_u32(raw + 12, td_crc32(0, raw, 12));
  if (td_flash_erase(TD_PART_STATE, (uint32_t)sector * TD_SECTOR, TD_SECTOR) != 0) return -1;
  return td_flash_write(TD_PART_STATE, (uint32_t)sector * TD_SECTOR, raw, sizeof(raw));
}

int td_slots_boot(td_slots *s, const td_contract *contract) {
  state st;
  int has = current_state(&st, &(int){0});
  int order[2], i, refused = 0;
  char reason[TD_MESSAGE_BYTES] = "";
  memset(s, 0, sizeof(*s));
  s->contract = contract;
  order[0] = has ? st.active : TD_PART_A;
  order[1] = has && st.last_good && st.last_good != st.active ? st.last_good : other(order[0]);
  for (i = 0; i < 2; ++i) {
    char why[TD_MESSAGE_BYTES];
    if (td_slots_check(contract, order[i], &s->image, why, sizeof(why)) != 0) {
      if (!refused++) memcpy(reason, why, sizeof(reason));
      continue;
    }
    s->running = order[i];
    s->trial = has && st.trial && order[i] == st.active;
    if (refused) {
      char tail[20];
      snprintf(tail, sizeof(tail), "; running slot %c", slot_name(order[i]));
      append(s->message, sizeof(s->message), reason);
      append(s->message, sizeof(s->message), tail);
      write_state((has ? st.sequence : 0) + 1, order[i], 0, order[i]);
    } else if (!has) {
      write_state(1, order[i], 0, order[i]);
    }
    return s->running;
  }
  append(s->message, sizeof(s->message), "no model can run: ");
  append(s->message, sizeof(s->message), reason);
  return 0;
}

void td_slots_first_inference(td_slots *s, int failed) {
  state st;
  int sector;
  if (!s->trial || !current_state(&st, &sector)) return;
  if (!failed) {
    write_state(st.sequence + 1, s->running, 0, s->running);
    s->trial = 0;
  } else if (st.last_good && st.last_good != s->running) {
    write_state(st.sequence + 1, st.last_good, 0, st.last_good); /* the next boot runs the last good slot */
  }
}

/* -- the update, whatever carries it ----------------------------------------------------- */

int td_slots_update_begin(td_slots *s, uint32_t size, char *message, size_t n) {
  int target = other(s->running);
  message[0] = '\0';
  if (size == 0 || size > td_flash_size(target)) {
    snprintf(message, n, "model begin %lu: slot %c holds 1 to %lu bytes", (unsigned long)size, slot_name(target),
             (unsigned long)td_flash_size(target));
    return -1;
  }
  if (td_flash_erase(target, 0, td_flash_size(target)) != 0) {
    snprintf(message, n, "flash erase failed");
    return -1;
  }
  s->expected = size;
  s->received = 0;
  return target;
}

int td_slots_update_write(td_slots *s, const uint8_t *data, uint32_t count, char *message, size_t n) {
  message[0] = '\0';
  if (s->expected == 0) {
    snprintf(message, n, "model chunk before model begin N");
  } else if (count > s->expected - s->received) {
    snprintf(message, n, "chunk ends past the %lu bytes announced", (unsigned long)s->expected);
  } else if (td_flash_write(other(s->running), s->received, data, count) != 0) {
    snprintf(message, n, "flash write failed");
  } else {
    s->received += count;
    return 0;
  }
  return -1;
}

int td_slots_update_commit(td_slots *s, td_image_info *info, char *message, size_t n) {
  char why[TD_MESSAGE_BYTES];
  state st;
  int sector, target = other(s->running);
  message[0] = '\0';
  if (s->expected == 0 || s->received != s->expected) {
    snprintf(message, n, "model commit: %lu of %lu bytes received", (unsigned long)s->received,
             (unsigned long)s->expected);
    return -1;
  }
  if (td_slots_check(s->contract, target, info, why, sizeof(why)) != 0) {
    snprintf(message, n, "model refused, slot %c keeps running: %s", slot_name(s->running), why);
    return -1;
  }
  if (current_state(&st, &sector)) {
    write_state(st.sequence + 1, target, 1, s->running);
  } else {
    write_state(1, target, 1, s->running);
  }
  s->expected = 0;
  return target;
}

/* -- the `model` commands ------------------------------------------------------------------ */

/* A decimal number that fills the whole token (at most 9 digits). */
static int parse_number(const char *token, unsigned long *value) {
  unsigned long v = 0;
  int n = 0;
  if (token == NULL || *token == '\0') return 0;
  for (; *token; ++token, ++n) {
    if (*token < '0' || *token > '9' || n >= 9) return 0;
    v = v * 10UL + (unsigned long)(*token - '0');
  }
  *value = v;
  return 1;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void begin(td_protocol *p, td_slots *s, const char *args) {
  unsigned long size;
  char line[TD_MESSAGE_BYTES];
  int target;
  if (!parse_number(args, &size)) {
    td_protocol_error(p, "usage: model begin N% (the image's size in bytes)");
    return;
  }
  target = td_slots_update_begin(s, (uint32_t)size, line, sizeof(line));
  if (target < 0) {
    td_protocol_error(p, line);
    return;
  }
  snprintf(line, sizeof(line), "m-model-slot-[%c]", slot_name(target));
  td_protocol_line(p, line);
  snprintf(line, sizeof(line), "m-[Expecting %lu bytes]", size);
  td_protocol_line(p, line);
}

/* 2: the chunk's bytes follow (its reply after them); 1: answered. */
static int chunk(td_protocol *p, td_slots *s, char *args) {
  char *space = strchr(args, ' ');
  unsigned long length;
  int k, bad = space == NULL;
  uint32_t crc = 0;
  if (!bad) {
    *space = '\0';
    bad = !parse_number(args, &length) || length == 0 || length > TD_MAX_CHUNK || strlen(space + 1) != 8;
    for (k = 0; !bad && k < 8; ++k) {
      int d = hex_digit(space[1 + k]);
      bad = d < 0;
      crc = (crc << 4) | (uint32_t)(d < 0 ? 0 : d);
    }
  }
  if (bad) {
    char line[128];
    snprintf(line, sizeof(line), "usage: model chunk L CRC%% (1 to %d bytes, CRC-32 as 8 hex digits), then the bytes",
             TD_MAX_CHUNK);
    td_protocol_error(p, line);
    return 1;
  }
  s->chunk_length = (uint32_t)length;
  s->chunk_crc = crc;
  s->chunk_filled = 0;
  p->raw_active = 1;
  return 2;
}

static void chunk_done(td_protocol *p, td_slots *s) {
  char line[128];
  uint32_t actual = td_crc32(0, s->chunk, s->chunk_length);
  if (s->expected != 0 && actual != s->chunk_crc) {
    snprintf(line, sizeof(line), "chunk crc32 %08lx != %08lx at byte %lu: send it again", (unsigned long)actual,
             (unsigned long)s->chunk_crc, (unsigned long)s->received);
    td_protocol_error(p, line);
  } else if (td_slots_update_write(s, s->chunk, s->chunk_length, line, sizeof(line)) != 0) {
    td_protocol_error(p, line);
  } else {
    snprintf(line, sizeof(line), "m-model-chunk-[%lu]", (unsigned long)s->received);
    td_protocol_line(p, line);
  }
  td_protocol_line(p, "m-ready");
}

/* 2 after a commit (it printed m-ready and restarts), 1 otherwise. */
static int commit(td_protocol *p, td_slots *s) {
  char line[TD_MESSAGE_BYTES + 64];
  td_image_info info;
  int target = td_slots_update_commit(s, &info, line, sizeof(line)), k;
  if (target < 0) {
    td_protocol_error(p, line);
    return 1;
  }
  snprintf(line, sizeof(line), "m-model-committed-[%c %s ", slot_name(target), info.version);
  for (k = 0; k < 6; ++k) {
    char hex[3];
    snprintf(hex, sizeof(hex), "%02x", info.sha256[k]);
    append(line, sizeof(line), hex);
  }
  append(line, sizeof(line), "]");
  td_protocol_line(p, line);
  td_protocol_line(p, "m-ready");
  td_flash_restart();
  return 2;
}

int td_slots_command(td_protocol *p, void *ctx, const char *command, char *args) {
  td_slots *s = (td_slots *)ctx;
  char *rest;
  if (strcmp(command, "model") != 0) return 0;
  rest = strchr(args, ' ');
  if (rest != NULL) *rest++ = '\0';
  else rest = args + strlen(args);
  if (strcmp(args, "chunk") == 0) return chunk(p, s, rest);
  if (strcmp(args, "begin") == 0) {
    begin(p, s, rest);
  } else if (strcmp(args, "commit") == 0) {
    return commit(p, s);
  } else {
    td_protocol_error(p, "usage: model begin N%, model chunk L CRC%, model commit%");
  }
  return 1;
}

int td_slots_byte(td_protocol *p, void *ctx, int byte) {
  td_slots *s = (td_slots *)ctx;
  s->chunk[s->chunk_filled++] = (uint8_t)byte;
  if (s->chunk_filled < s->chunk_length) return 1;
  chunk_done(p, s);
  return 0;
}

const uint8_t *td_slots_model(const td_slots *s) {
  const uint8_t *base = s->running ? td_flash_map(s->running) : NULL;
  return base ? base + s->image.header_bytes : NULL;
}

const uint8_t *td_slots_constants(const td_slots *s, uint32_t *bytes) {
  const uint8_t *base = s->running && s->image.constants_bytes ? td_flash_map(s->running) : NULL;
  *bytes = base ? s->image.constants_bytes : 0;
  return base ? base + s->image.constants_offset : NULL;
}

size_t td_slots_info(const td_slots *s, char *buf, size_t length, size_t size) {
  static const char kSha[] = "\"model_sha256\":\"", kBytes[] = "\"model_bytes\":";
  char copy[TD_INFO_SIZE], tail[96];
  const char *at;
  size_t n = length < sizeof(copy) - 1 ? length : sizeof(copy) - 1, o = 0;
  int k;
  if (!s->running || n == 0 || size == 0) return length;
  memcpy(copy, buf, n);
  copy[n] = '\0';
  at = strstr(copy, kSha);
  if (at != NULL && strlen(at) >= sizeof(kSha) - 1 + 64) { /* the slot's model, not the rendered one */
    static const char hex[] = "0123456789abcdef";
    char *digits = copy + (at - copy) + sizeof(kSha) - 1;
    for (k = 0; k < 32; ++k) {
      digits[2 * k] = hex[s->image.sha256[k] >> 4];
      digits[2 * k + 1] = hex[s->image.sha256[k] & 15];
    }
  }
  at = strstr(copy, kBytes);
  buf[0] = '\0';
  if (at != NULL) {
    const char *end = at + sizeof(kBytes) - 1;
    char number[16];
    while (*end >= '0' && *end <= '9') ++end;
    o = (size_t)(at - copy) + sizeof(kBytes) - 1;
    if (o >= size) o = size - 1;
    memcpy(buf, copy, o);
    buf[o] = '\0';
    snprintf(number, sizeof(number), "%lu", (unsigned long)s->image.model_bytes);
    append(buf, size, number);
    append(buf, size, end);
  } else {
    append(buf, size, copy);
  }
  o = strlen(buf);
  if (o > 0 && buf[o - 1] == '}') buf[--o] = '\0';
  snprintf(tail, sizeof(tail), ",\"model_slot\":\"%c\",\"model_version\":\"%s\",\"model_trial\":%s}",
           slot_name(s->running), s->image.version, s->trial ? "true" : "false");
  append(buf, size, tail);
  return strlen(buf);
}
