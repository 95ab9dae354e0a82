/* What the C-engine firmware (td_main.c) needs from a platform: a serial
 * port and a free-running clock. One small file implements it per platform
 * (hal_qemu_virt.c, hal_espidf.c). */
#ifndef TD_HAL_H_
#define TD_HAL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void td_hal_init(void);
void td_hal_write(const char *data, size_t len);
/* Block until a byte arrives on the serial port; returns it. */
int td_hal_read(void);
/* The clock the protocol's m-lap-us stamps carry: microseconds on a board,
 * instructions retired on the emulated RISC-V board (info% says which). */
uint64_t td_hal_ticks(void);

/* The firmware: runs the protocol forever. */
void td_main(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_HAL_H_ */
