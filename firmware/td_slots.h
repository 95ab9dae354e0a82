/* Model slots (docs/model-update.md): the model in one of two flash partitions (A and B),
 * checked at boot against what this firmware registers (its contract), with an A/B state
 * and rollback, and the protocol's `model begin/chunk/commit` upload into the inactive slot.
 * Portable C99 over the flash interface below; tinydeploy/device/slots.py is its Python
 * twin and tinydeploy/core/image.py defines the image and state formats. */
#ifndef TD_SLOTS_H_
#define TD_SLOTS_H_

#include <stddef.h>
#include <stdint.h>

#include "td_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TD_MAX_CHUNK 1024     /* the largest `model chunk L` (MAX_CHUNK in core/protocol.py) */
#define TD_IMAGE_FORMAT 2     /* the newest image format this firmware reads */
#define TD_IMAGE_FIXED 192    /* the header's fixed part */
#define TD_SECTOR 4096        /* flash erase sector; the state partition holds two */
#define TD_MESSAGE_BYTES 320  /* the longest refusal, with its NUL */

/* The partitions, as td_flash_* name them. */
enum { TD_PART_STATE = 0, TD_PART_A = 1, TD_PART_B = 2 };

/* Flash, implemented per platform (hal_espidf_slots.c: esp_partition_*; the host tests: files).
 * Each returns 0 on success. */
uint32_t td_flash_size(int part);
int td_flash_read(int part, uint32_t offset, void *data, size_t count);
int td_flash_erase(int part, uint32_t offset, size_t count);
int td_flash_write(int part, uint32_t offset, const void *data, size_t count);
/* The slot's bytes in place (esp_partition_mmap), or NULL where the platform cannot map. */
const uint8_t *td_flash_map(int part);
/* Start again (esp_restart on a board): after a commit, into the new slot. */
void td_flash_restart(void);

/* What the firmware registers: a model image must fit it. */
typedef struct td_contract {
  const char *const *ops; /* operator names, e.g. "CONV_2D" */
  size_t op_count;
  uint32_t arena_bytes;
  const char *kernels;    /* the kernel library whose arena figure applies, e.g. "esp-nn" */
  int32_t input_dims[4];
  uint8_t input_rank;
  int32_t output_dims[4];
  uint8_t output_rank;
  const uint8_t *plan_sha256; /* the C engine's plan (32 bytes); NULL for TFLM */
} td_contract;

/* The image header's fields that the firmware uses. */
typedef struct td_image_info {
  uint32_t header_bytes, image_bytes, model_bytes, crc;
  uint32_t constants_offset, constants_bytes; /* the C engine's constants (format 2); 0 bytes when none */
  uint8_t sha256[32];
  char version[32];
} td_image_info;

typedef struct td_slots {
  const td_contract *contract;
  int running;        /* TD_PART_A or TD_PART_B; 0 when no slot can run */
  int trial;          /* the running slot is on trial: its first inference decides */
  td_image_info image;
  char message[TD_MESSAGE_BYTES]; /* why a slot was refused at boot ("" when none was) */
  /* the upload in progress */
  uint32_t expected, received;
  uint32_t chunk_length, chunk_crc, chunk_filled;
  uint8_t chunk[TD_MAX_CHUNK];
} td_slots;

/* Check a slot as the boot does: magic, format, sizes, CRC over the image, the contract.
 * Returns 0 and fills *info, or -1 with why in message (size bytes). */
int td_slots_check(const td_contract *contract, int part, td_image_info *info, char *message, size_t size);

/* Choose the slot to run (rolling back from one that fails its check, writing the new state).
 * Returns the slot, or 0 when neither can run (s->message says why). */
int td_slots_boot(td_slots *s, const td_contract *contract);

/* The first inference on the running slot finished (failed != 0 when it failed): a slot on
 * trial becomes the last good one, or is given up for the last good one at the next boot. */
void td_slots_first_inference(td_slots *s, int failed);

/* The update of the slot that is not running, whatever carries the image (the `model` commands
 * below, or an application's own transport). Each returns -1 with why in message (n bytes).
 * begin: erases the slot for an image of size bytes; returns the slot (TD_PART_A or B).
 * write: the image's next count bytes. commit: all announced bytes written, checks the slot as
 * the boot does and marks it to try; returns the slot (restart the board to run it). */
int td_slots_update_begin(td_slots *s, uint32_t size, char *message, size_t n);
int td_slots_update_write(td_slots *s, const uint8_t *data, uint32_t count, char *message, size_t n);
int td_slots_update_commit(td_slots *s, td_image_info *info, char *message, size_t n);

/* The `model` commands for the protocol core (td_protocol_set_extension). */
int td_slots_command(td_protocol *p, void *ctx, const char *command, char *args);
int td_slots_byte(td_protocol *p, void *ctx, int byte);

/* The running slot's model (the flatbuffer after the image header), read in place through
 * td_flash_map; NULL when no slot runs or the platform cannot map. */
const uint8_t *td_slots_model(const td_slots *s);

/* The running slot's C engine constants (after the model, format 2), read in place, and their
 * size in *bytes; NULL (and 0) when the image has none or no slot runs. */
const uint8_t *td_slots_constants(const td_slots *s, uint32_t *bytes);

/* The info% line of the runner (length bytes in buf, a JSON object), told about the slot: its
 * model_sha256 and model_bytes become the slot's, and model_slot, model_version and
 * model_trial are added. Returns the new length (at most size - 1). */
size_t td_slots_info(const td_slots *s, char *buf, size_t length, size_t size);

/* CRC-32 (IEEE, reflected; zlib's crc32), continued from crc (0 to start). */
uint32_t td_crc32(uint32_t crc, const void *data, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* TD_SLOTS_H_ */
