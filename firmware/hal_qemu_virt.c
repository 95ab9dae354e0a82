/* Platform for QEMU's RISC-V `virt` machine: the NS16550A UART at 0x10000000
 * and the minstret counter, which under `-icount shift=0` counts every
 * retired instruction exactly and repeatably. */
#include "td_hal.h"

#define UART_BASE 0x10000000UL
#define UART_RBR 0 /* receive buffer (read) */
#define UART_THR 0 /* transmit holding (write) */
#define UART_LSR 5 /* line status */
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY 0x20

static volatile uint8_t *const uart = (volatile uint8_t *)UART_BASE;

void td_hal_init(void) {}

void td_hal_write(const char *data, size_t len) {
  size_t i;
  for (i = 0; i < len; ++i) {
    while (!(uart[UART_LSR] & LSR_THR_EMPTY)) {
    }
    uart[UART_THR] = (uint8_t)data[i];
  }
}

int td_hal_read(void) {
  while (!(uart[UART_LSR] & LSR_DATA_READY)) {
  }
  return uart[UART_RBR];
}

uint64_t td_hal_ticks(void) {
  uint32_t high, low, again;
  do { /* a consistent 64-bit read on RV32 */
    __asm__ volatile("csrr %0, minstreth" : "=r"(high));
    __asm__ volatile("csrr %0, minstret" : "=r"(low));
    __asm__ volatile("csrr %0, minstreth" : "=r"(again));
  } while (high != again);
  return ((uint64_t)high << 32) | low;
}

int main(void) {
  td_main();
  return 0;
}
