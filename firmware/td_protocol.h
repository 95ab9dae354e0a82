/* tinydeploy device protocol core: the MLPerf Tiny device-under-test command
 * set plus tinydeploy's `info%`. Portable C99 behind a small platform
 * interface, so the same code runs on the board and, in the tests, on the host.
 * Protocol reference: docs/protocol.md. */
#ifndef TD_PROTOCOL_H_
#define TD_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TD_MAX_COMMAND 80 /* MLPerf Tiny: a command is at most 80 characters */
#define TD_INFO_SIZE 768  /* the buffer `info%` fills: the info line is at most TD_INFO_SIZE - 1 bytes */
#define TD_MAX_COUNT 1000000009UL /* the largest N parse_count takes (db load N, infer N W) */

/* What the protocol needs from the board. */
typedef struct td_platform {
  void *ctx;
  /* Write len bytes to the serial port. */
  void (*write)(void *ctx, const char *data, size_t len);
  /* A free-running microsecond clock. */
  uint64_t (*micros)(void *ctx);
  /* Run the model once on the input buffer; 0 on success. */
  int (*invoke)(void *ctx);
  /* Write the one-line JSON info object (no newline) into buf; returns its length. */
  size_t (*info)(void *ctx, char *buf, size_t size);
  /* Run the model once more, timing each layer (operator) with the micros clock: point
   * *durations at the layers' times, in order, and return how many; 0 when the run failed.
   * NULL when the firmware has no per-layer profile (`layers%` then says so). */
  size_t (*profile)(void *ctx, const uint64_t **durations);
} td_platform;

/* The model's I/O buffers (e.g. the TFLM input and output tensors). */
typedef struct td_model_io {
  int8_t *input;
  size_t input_size;
  const int8_t *output;
  size_t output_size;
  const char *name;  /* device name for `name%` */
  const char *model; /* model name for `profile%` */
} td_model_io;

struct td_protocol;
/* An optional extension of the command set (model slots, td_slots.c). command: 0 when it is not
 * the extension's; 1 when it answered (the core ends the reply with m-ready); 2 when it ends the
 * reply itself: after raw bytes (it sets raw_active, and the core hands it each byte until byte
 * returns 0), or at once. */
typedef int (*td_extension_command)(struct td_protocol *p, void *ctx, const char *command, char *args);
typedef int (*td_extension_byte)(struct td_protocol *p, void *ctx, int byte);

typedef struct td_protocol {
  const td_platform *platform;
  td_model_io io;
  int ready;             /* 0 when the model could not be set up */
  char line[TD_MAX_COMMAND + 1];
  size_t line_length;
  int overflow;          /* the current command is longer than TD_MAX_COMMAND */
  size_t expected;       /* bytes announced by `db load N` */
  size_t loaded;         /* bytes received since */
  td_extension_command extension; /* NULL: no extension */
  td_extension_byte extension_byte;
  void *extension_ctx;
  int raw_active;        /* the extension takes the next bytes raw */
} td_protocol;

/* Set up the protocol. ready = 0 makes every model command answer an error
 * (after e.g. a failed tensor allocation). */
void td_protocol_init(td_protocol *p, const td_platform *platform, const td_model_io *io, int ready);

/* Print the boot banner: m-init-done and m-ready. */
void td_protocol_boot(td_protocol *p);

/* Feed one received byte; a complete command (ending in '%') is executed. */
void td_protocol_feed(td_protocol *p, int byte);

/* Print "e-[message]\r\n" (for errors outside a command, such as a failed allocation). */
void td_protocol_error(td_protocol *p, const char *message);

/* Print one line (for an extension's replies). */
void td_protocol_line(td_protocol *p, const char *text);

/* Add commands (after td_protocol_init): see td_extension_command. */
void td_protocol_set_extension(td_protocol *p, td_extension_command command, td_extension_byte byte, void *ctx);

#ifdef __cplusplus
}
#endif

#endif /* TD_PROTOCOL_H_ */
