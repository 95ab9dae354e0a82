/* Platform for ESP-IDF boards: UART0 through the IDF driver, esp_timer for
 * microseconds. app_main runs the firmware (td_main.c), of either engine.
 * TD_BAUD comes from the generated src/CMakeLists.txt. */
#include "driver/uart.h"
#include "esp_timer.h"
#include "td_hal.h"

#define TD_UART UART_NUM_0

void td_hal_init(void) {
  uart_driver_install(TD_UART, TD_RX_BUFFER_BYTES, 1024, 0, NULL, 0);
  uart_set_baudrate(TD_UART, TD_BAUD);
}

void td_hal_write(const char *data, size_t len) { uart_write_bytes(TD_UART, data, len); }

int td_hal_read(void) {
  uint8_t byte;
  while (uart_read_bytes(TD_UART, &byte, 1, portMAX_DELAY) != 1) {
  }
  return byte;
}

uint64_t td_hal_ticks(void) { return (uint64_t)esp_timer_get_time(); }

void app_main(void) { td_main(); }
