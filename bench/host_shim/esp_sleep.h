/* Host stand-in for the ESP sleep calls the duty-cycled firmware makes (ESP-IDF's esp_sleep.h,
 * which arduino-esp32 also offers): each is recorded (sleep_shim.c), light sleep sleeps for real,
 * deep sleep starts the program again, as the chip boots again. The real calls return esp_err_t,
 * an int; the firmware ignores it. */
#ifndef TD_SHIM_ESP_SLEEP_H_
#define TD_SHIM_ESP_SLEEP_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

int esp_sleep_enable_timer_wakeup(uint64_t time_in_us);
int esp_light_sleep_start(void);
void esp_deep_sleep_start(void) __attribute__((noreturn));

/* What the stand-ins record (defined in host_uart.c): one line "MICROS EVENT VALUE" in the file TD_SHIM_RECORD names. */
void td_shim_record(const char *event, long long value);

#ifdef __cplusplus
}
#endif

#endif /* TD_SHIM_ESP_SLEEP_H_ */
