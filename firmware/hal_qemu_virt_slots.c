/* Flash for the model slots on QEMU's RISC-V virt machine (td_slots.h): the partitions
 * td_state, model_a and model_b at their partitions.csv offsets (td_board.h's TD_FLASH_*)
 * in the second CFI flash bank, backed by a file given with
 * `-drive if=pflash,unit=1,format=raw,file=FLASH` (boards/qemu-riscv32.toml's flash_args).
 *
 * hw/riscv/virt.c maps two pflash_cfi01 banks at 0x20000000 (0x4000000 bytes, half each), bank
 * width 4, device width 2, 256 KiB sectors. Bank 0 is left alone: given a drive, QEMU starts
 * the CPU at its base instead of at the firmware. (Given bank 1, QEMU 7.2 loads no -kernel into
 * RAM, keeping it for an S-mode firmware, so the board's flash_args load the ELF with
 * `-device loader`.) In read-array mode the bank is plain memory, so reads and td_flash_map
 * read it in place, as esp_partition_mmap does on an ESP32. Writes use the Intel command set
 * as hw/block/pflash_cfi01.c implements it. */
#include <string.h>

#include "td_board.h"
#include "td_slots.h"

#define FLASH_BASE 0x22000000UL  /* bank 1: VIRT_FLASH base 0x20000000 + 0x4000000 / 2 */
#define FLASH_BYTES 0x2000000UL  /* one bank, 32 MiB */

/* pflash_cfi01.c: the command is the written value's low byte. */
#define CMD_PROGRAM 0x40u      /* word program: the next write is the data */
#define CMD_CLEAR_STATUS 0x50u /* clears the status and returns to read-array mode */
#define CMD_READ_ARRAY 0xFFu
#define STATUS_READY 0x80u     /* in program mode a read returns the status */
#define STATUS_PROGRAM_ERROR 0x10u

/* QEMU's SiFive test device (hw/misc/sifive_test.h): FINISHER_RESET resets the machine. The reset
 * copies the firmware's ELF into RAM again (hw/core/loader.c rom_reset) and keeps the flash; the
 * UART's chardev, and so its TCP connection, stays. */
#define TEST_BASE 0x100000UL
#define FINISHER_RESET 0x7777u

/* The NS16550A (hal_qemu_virt.c). */
#define UART_BASE 0x10000000UL
#define UART_LSR 5
#define LSR_TX_EMPTY 0x40 /* holding and shift registers empty: all sent */

#if TD_FLASH_STATE_OFFSET + TD_FLASH_STATE_SIZE > FLASH_BYTES || \
    TD_FLASH_MODEL_A_OFFSET + TD_FLASH_MODEL_A_SIZE > FLASH_BYTES || \
    TD_FLASH_MODEL_B_OFFSET + TD_FLASH_MODEL_B_SIZE > FLASH_BYTES
#error "a model-slot partition ends past the 32 MiB flash bank"
#endif

static const struct {
  uint32_t offset, size;
} kParts[3] = {{TD_FLASH_STATE_OFFSET, TD_FLASH_STATE_SIZE},
               {TD_FLASH_MODEL_A_OFFSET, TD_FLASH_MODEL_A_SIZE},
               {TD_FLASH_MODEL_B_OFFSET, TD_FLASH_MODEL_B_SIZE}};

/* The compiler must not keep flash bytes read before a program in registers across it. */
#define FLASH_CHANGED() __asm__ volatile("" : : : "memory")

/* The flash offset of a part's range, or -1 when the range is not inside the part. */
static long locate(int part, uint32_t offset, size_t count) {
  if (part < TD_PART_STATE || part > TD_PART_B) return -1;
  if (offset > kParts[part].size || count > kParts[part].size - offset) return -1;
  return (long)(kParts[part].offset + offset);
}

static volatile uint32_t *flash_word(uint32_t at) { return (volatile uint32_t *)(FLASH_BASE + at); }

/* Programs one aligned word, then returns the bank to read-array mode (until then every read
 * of the bank returns the status). */
static int program_word(uint32_t at, uint32_t value) {
  volatile uint32_t *word = flash_word(at);
  uint32_t status;
  FLASH_CHANGED();
  *word = CMD_PROGRAM;
  *word = value;
  do {
    status = *word;
  } while (!(status & STATUS_READY));
  *word = (status & STATUS_PROGRAM_ERROR) ? CMD_CLEAR_STATUS : CMD_READ_ARRAY; /* an error: a read-only drive */
  FLASH_CHANGED();
  return (status & STATUS_PROGRAM_ERROR) ? -1 : 0;
}

/* Sets count bytes from flash offset at to data (0xFF where data is NULL), a whole word at a time:
 * the bytes of a partly covered word outside the range are read and programmed back. Words that
 * already hold their new value are not programmed. */
static int put(uint32_t at, const uint8_t *data, size_t count) {
  uint32_t end = at + (uint32_t)count, word;
  for (word = at & ~3u; word < end; word += 4) {
    uint32_t old, value;
    uint8_t bytes[4];
    int k;
    memcpy(&old, (const void *)(FLASH_BASE + word), 4);
    memcpy(bytes, &old, 4);
    for (k = 0; k < 4; ++k) {
      uint32_t byte = word + (uint32_t)k;
      if (byte >= at && byte < end) bytes[k] = data ? data[byte - at] : 0xFF;
    }
    memcpy(&value, bytes, 4);
    if (value != old && program_word(word, value) != 0) return -1;
  }
  return 0;
}

uint32_t td_flash_size(int part) {
  return part >= TD_PART_STATE && part <= TD_PART_B ? kParts[part].size : 0;
}

int td_flash_read(int part, uint32_t offset, void *data, size_t count) {
  long at = locate(part, offset, count);
  if (at < 0) return -1;
  memcpy(data, (const void *)(FLASH_BASE + (unsigned long)at), count);
  return 0;
}

/* Erases by programming 0xFF over the range. QEMU's sectors here are 256 KiB, far larger than
 * the 4 KB state sectors: a block erase (0x20) would wipe both state records and a slot. This
 * relies on QEMU's model storing program data as given (pflash_data_write), where real NOR only
 * clears bits; it keeps each 4 KB state sector independent, as on the ESP32's SPI flash. */
int td_flash_erase(int part, uint32_t offset, size_t count) {
  long at = locate(part, offset, count);
  return at < 0 ? -1 : put((uint32_t)at, NULL, count);
}

int td_flash_write(int part, uint32_t offset, const void *data, size_t count) {
  long at = locate(part, offset, count);
  return at < 0 || data == NULL ? -1 : put((uint32_t)at, (const uint8_t *)data, count);
}

const uint8_t *td_flash_map(int part) {
  long at = locate(part, 0, 0);
  return at < 0 ? NULL : (const uint8_t *)(FLASH_BASE + (unsigned long)at);
}

void td_flash_restart(void) {
  volatile uint8_t *uart = (volatile uint8_t *)UART_BASE;
  while (!(uart[UART_LSR] & LSR_TX_EMPTY)) { /* the commit's reply goes out first */
  }
  *(volatile uint32_t *)TEST_BASE = FINISHER_RESET;
  for (;;) {
    __asm__ volatile("wfi");
  }
}
