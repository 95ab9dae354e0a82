/* Platform for QEMU's RISC-V `virt` machine: the NS16550A UART at 0x10000000
 * and the minstret counter, which under `-icount shift=0` counts every
 * retired instruction exactly and repeatably.
 *
 * Waiting for input, the core sleeps (wfi) until the UART's receive interrupt is
 * pending, instead of polling: an emulator then uses no host CPU while the host is
 * silent, so several emulated boards run side by side. Interrupts stay disabled
 * (mstatus.MIE is 0): wfi wakes on a pending enabled interrupt without taking a
 * trap, and the PLIC's claim and complete acknowledge it. Addresses and the
 * UART's interrupt number are those of QEMU's virt machine (hw/riscv/virt.c). */
#include "td_hal.h"

#define UART_BASE 0x10000000UL
#define UART_RBR 0 /* receive buffer (read) */
#define UART_THR 0 /* transmit holding (write) */
#define UART_LSR 5 /* line status */
#define LSR_DATA_READY 0x01
#define LSR_THR_EMPTY 0x20

#define UART_IER 1 /* interrupt enable */
#define IER_RX_DATA 0x01
#define UART_IRQ 10
#define PLIC_BASE 0x0C000000UL
#define PLIC_PRIORITY(irq) (PLIC_BASE + 4 * (irq))
#define PLIC_ENABLE_CONTEXT0 (PLIC_BASE + 0x2000)     /* hart 0, machine mode */
#define PLIC_THRESHOLD_CONTEXT0 (PLIC_BASE + 0x200000)
#define PLIC_CLAIM_CONTEXT0 (PLIC_BASE + 0x200004)
#define MIE_MEIE (1u << 11) /* machine external interrupts */

static volatile uint8_t *const uart = (volatile uint8_t *)UART_BASE;

static volatile uint32_t *reg32(unsigned long address) { return (volatile uint32_t *)address; }

void td_hal_init(void) {
  uart[UART_IER] = IER_RX_DATA;
  *reg32(PLIC_PRIORITY(UART_IRQ)) = 1;
  *reg32(PLIC_ENABLE_CONTEXT0) |= 1u << UART_IRQ;
  *reg32(PLIC_THRESHOLD_CONTEXT0) = 0;
  __asm__ volatile("csrs mie, %0" : : "r"(MIE_MEIE));
}

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
    uint32_t claimed;
    __asm__ volatile("wfi");
    claimed = *reg32(PLIC_CLAIM_CONTEXT0);
    if (claimed != 0) *reg32(PLIC_CLAIM_CONTEXT0) = claimed; /* complete it */
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
