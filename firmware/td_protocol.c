/* tinydeploy device protocol core. See td_protocol.h and docs/protocol.md. */
#include "td_protocol.h"

#include <stdio.h>
#include <string.h>

static void emit(td_protocol *p, const char *text) {
  p->platform->write(p->platform->ctx, text, strlen(text));
}

static void emit_line(td_protocol *p, const char *text) {
  emit(p, text);
  emit(p, "\r\n");
}

void td_protocol_error(td_protocol *p, const char *message) {
  emit(p, "e-[");
  emit(p, message);
  emit_line(p, "]");
}

void td_protocol_line(td_protocol *p, const char *text) { emit_line(p, text); }

void td_protocol_set_extension(td_protocol *p, td_extension_command command, td_extension_byte byte, void *ctx) {
  p->extension = command;
  p->extension_byte = byte;
  p->extension_ctx = ctx;
}

void td_protocol_init(td_protocol *p, const td_platform *platform, const td_model_io *io, int ready) {
  memset(p, 0, sizeof(*p));
  p->platform = platform;
  p->io = *io;
  p->ready = ready;
}

void td_protocol_boot(td_protocol *p) {
  emit_line(p, "m-init-done");
  emit_line(p, "m-ready");
}

/* Parse a non-negative decimal number that fills the whole token. */
static int parse_count(const char *token, unsigned long *value) {
  unsigned long v = 0;
  if (token == NULL || *token == '\0') return 0;
  for (; *token; ++token) {
    if (*token < '0' || *token > '9') return 0;
    if (v > TD_MAX_COUNT / 10UL) return 0; /* far beyond any buffer or run count */
    v = v * 10UL + (unsigned long)(*token - '0');
  }
  *value = v;
  return 1;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void print_results(td_protocol *p) {
  char number[8];
  size_t i;
  emit(p, "m-results-[");
  for (i = 0; i < p->io.output_size; ++i) {
    snprintf(number, sizeof(number), i ? ",%d" : "%d", (int)p->io.output[i]);
    emit(p, number);
  }
  emit_line(p, "]");
}

static void print_lap(td_protocol *p, uint64_t stamp) {
  char line[40];
  snprintf(line, sizeof(line), "m-lap-us-%llu", (unsigned long long)stamp);
  emit_line(p, line);
}

static void command_db(td_protocol *p, char *args) {
  char message[64];
  unsigned long count;
  if (strncmp(args, "load", 4) == 0 && (args[4] == ' ' || args[4] == '\0')) {
    if (!parse_count(args[4] ? args + 5 : NULL, &count) || count == 0) {
      td_protocol_error(p, "db load needs a byte count: db load N%");
      return;
    }
    if (count != p->io.input_size) {
      snprintf(message, sizeof(message), "db load %lu: the model input is %lu bytes", count,
               (unsigned long)p->io.input_size);
      td_protocol_error(p, message);
      return;
    }
    p->expected = count;
    p->loaded = 0;
    snprintf(message, sizeof(message), "m-[Expecting %lu bytes]", count);
    emit_line(p, message);
    return;
  }
  if (p->expected == 0) {
    td_protocol_error(p, "db data before db load N");
    return;
  }
  {
    size_t length = strlen(args), i;
    if (length == 0 || length % 2 != 0) {
      td_protocol_error(p, "db data must be an even number of hex digits");
      return;
    }
    for (i = 0; i < length; ++i) {
      if (hex_value(args[i]) < 0) {
        td_protocol_error(p, "db data must be hex digits");
        return;
      }
    }
    if (p->loaded + length / 2 > p->expected) {
      snprintf(message, sizeof(message), "db data exceeds the %lu bytes announced",
               (unsigned long)p->expected);
      td_protocol_error(p, message);
      p->expected = 0; /* start over with db load */
      p->loaded = 0;
      return;
    }
    for (i = 0; i < length; i += 2) {
      p->io.input[p->loaded++] = (int8_t)(uint8_t)((hex_value(args[i]) << 4) | hex_value(args[i + 1]));
    }
    if (p->loaded == p->expected) emit_line(p, "m-load-done");
  }
}

static void command_infer(td_protocol *p, char *args) {
  char *space = strchr(args, ' ');
  unsigned long runs, warmup = 0, i;
  uint64_t start, end;
  char line[48];
  if (space != NULL) *space = '\0';
  if (!parse_count(args, &runs) || (space != NULL && !parse_count(space + 1, &warmup))) {
    td_protocol_error(p, "usage: infer N W% (N runs after W warm-up runs)");
    return;
  }
  if (runs == 0) {
    td_protocol_error(p, "infer needs a count of at least 1");
    return;
  }
  if (p->expected == 0 || p->loaded != p->expected) {
    td_protocol_error(p, "no input loaded: send db load N% and the data first");
    return;
  }
  snprintf(line, sizeof(line), "m-warmup-start-%lu", warmup);
  emit_line(p, line);
  for (i = 0; i < warmup; ++i) {
    if (p->platform->invoke(p->platform->ctx) != 0) {
      td_protocol_error(p, "invoke failed");
      return;
    }
  }
  emit_line(p, "m-warmup-done");
  snprintf(line, sizeof(line), "m-infer-start-%lu", runs);
  emit_line(p, line);
  /* Both stamps are printed after the runs, so no serial output (whose timing
   * depends on the host) falls inside the measured interval. */
  start = p->platform->micros(p->platform->ctx);
  for (i = 0; i < runs; ++i) {
    if (p->platform->invoke(p->platform->ctx) != 0) {
      td_protocol_error(p, "invoke failed");
      return;
    }
  }
  end = p->platform->micros(p->platform->ctx);
  print_lap(p, start);
  print_lap(p, end);
  emit_line(p, "m-infer-done");
  print_results(p);
}

static void command_layers(td_protocol *p) {
  const uint64_t *durations = NULL;
  size_t count, i;
  char line[48];
  if (p->platform->profile == NULL) {
    td_protocol_error(p, "this firmware has no per-layer profile");
    return;
  }
  if (p->expected == 0 || p->loaded != p->expected) {
    td_protocol_error(p, "no input loaded: send db load N% and the data first");
    return;
  }
  count = p->platform->profile(p->platform->ctx, &durations);
  if (count == 0 || durations == NULL) {
    td_protocol_error(p, "invoke failed");
    return;
  }
  for (i = 0; i < count; ++i) {
    snprintf(line, sizeof(line), "m-layer-%lu-%llu", (unsigned long)i, (unsigned long long)durations[i]);
    emit_line(p, line);
  }
}

static void execute(td_protocol *p, char *command) {
  int handled;
  char *args = strchr(command, ' ');
  if (args != NULL) *args++ = '\0';
  else args = command + strlen(command);
  if (strcmp(command, "name") == 0) {
    emit(p, "m-name-dut-[");
    emit(p, p->io.name);
    emit_line(p, "]");
  } else if (strcmp(command, "profile") == 0) {
    emit_line(p, "m-profile-[tinydeploy]");
    emit(p, "m-model-[");
    emit(p, p->io.model);
    emit_line(p, "]");
  } else if (strcmp(command, "info") == 0) {
    char info[TD_INFO_SIZE];
    size_t length = p->platform->info(p->platform->ctx, info, sizeof(info));
    emit(p, "m-info-");
    p->platform->write(p->platform->ctx, info, length < sizeof(info) ? length : sizeof(info) - 1);
    emit(p, "\r\n");
  } else if (!p->ready && (strcmp(command, "db") == 0 || strcmp(command, "infer") == 0 ||
                           strcmp(command, "results") == 0 || strcmp(command, "layers") == 0)) {
    td_protocol_error(p, "the model is not set up (see the error printed at boot)");
  } else if (strcmp(command, "db") == 0) {
    command_db(p, args);
  } else if (strcmp(command, "infer") == 0) {
    command_infer(p, args);
  } else if (strcmp(command, "results") == 0) {
    print_results(p);
  } else if (strcmp(command, "layers") == 0) {
    command_layers(p);
  } else if (p->extension != NULL && (handled = p->extension(p, p->extension_ctx, command, args)) != 0) {
    if (handled == 2) return; /* the extension ends its reply itself (after raw bytes, or at once) */
  } else {
    emit(p, "e-[unknown command '");
    emit(p, command);
    emit_line(p, "']");
  }
  emit_line(p, "m-ready");
}

void td_protocol_feed(td_protocol *p, int byte) {
  if (byte < 0) return;
  if (p->raw_active) { /* an extension's raw bytes (a model chunk), '%' and line breaks too */
    p->raw_active = p->extension_byte(p, p->extension_ctx, byte);
    return;
  }
  if (byte == '%') {
    if (p->overflow) {
      td_protocol_error(p, "command longer than 80 characters");
      emit_line(p, "m-ready");
    } else {
      p->line[p->line_length] = '\0';
      execute(p, p->line);
    }
    p->line_length = 0;
    p->overflow = 0;
    return;
  }
  if (byte == '\r' || byte == '\n') return; /* line breaks around commands are ignored */
  if (p->line_length >= TD_MAX_COMMAND) {
    p->overflow = 1;
    return;
  }
  p->line[p->line_length++] = (char)byte;
}
