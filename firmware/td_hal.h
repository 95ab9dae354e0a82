/* What the firmware's main (td_main.c) needs from a platform: a serial port
 * and a free-running clock. One small file implements it per platform
 * (hal_qemu_virt.c, hal_espidf.c, hal_arduino.cpp), and starts the firmware
 * the platform's way (main, app_main, setup and loop). */
#ifndef TD_HAL_H_
#define TD_HAL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The serial port's receive buffer on a board: the host sends the next
 * validation sample while one inference runs. */
#define TD_RX_BUFFER_BYTES 4096

void td_hal_init(void);
void td_hal_write(const char *data, size_t len);
/* The next byte received on the serial port. Where the framework runs its own
 * loop between calls (Arduino's loop()), -1 when none is waiting; elsewhere it
 * blocks until a byte arrives. */
int td_hal_read(void);
/* The clock the protocol's m-lap-us stamps carry: microseconds on a board,
 * instructions retired on the emulated RISC-V board (info% says which). */
uint64_t td_hal_ticks(void);

/* The firmware (td_main.c): td_main_setup starts the platform, the model and
 * the protocol; td_main_run feeds the protocol each received byte, until
 * td_hal_read has none; td_main does both, forever on a blocking port. */
void td_main_setup(void);
void td_main_run(void);
void td_main(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_HAL_H_ */
