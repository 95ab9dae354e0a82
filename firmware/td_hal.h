/* What the firmware's main (td_main.c) needs from a platform: a serial port
 * and a free-running clock; the duty-cycled main (td_duty.c) also a marker pin
 * and sleep. One small file implements it per platform
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

/* The duty-cycled firmware (td_duty.c) only: a marker pin a power monitor
 * reads to integrate only the inference window, and sleeping until the next
 * period. The protocol main (td_main.c) uses neither. */
#define TD_SLEEP_AWAKE 0 /* stay awake, waiting on the clock */
#define TD_SLEEP_LIGHT 1 /* light sleep: RAM kept, returns on the timer */
#define TD_SLEEP_DEEP 2  /* deep sleep: does not return; the chip boots again */
/* Make gpio an output, low; a negative gpio: no marker (td_hal_marker does nothing). */
void td_hal_marker_setup(int gpio);
/* Drive the marker pin: 1 while an inference runs, 0 otherwise. */
void td_hal_marker(int level);
/* Sleep (or wait awake) for us microseconds in one of the TD_SLEEP_ modes. The
 * serial port's output is sent first. TD_SLEEP_DEEP does not return. */
void td_hal_sleep_us(uint64_t us, int mode);

/* The firmware (td_main.c or, duty-cycled, td_duty.c): td_main_setup starts the platform, the model and
 * the protocol; td_main_run feeds the protocol each received byte, until
 * td_hal_read has none; td_main does both, forever on a blocking port. */
void td_main_setup(void);
void td_main_run(void);
void td_main(void);

#ifdef __cplusplus
}
#endif

#endif /* TD_HAL_H_ */
