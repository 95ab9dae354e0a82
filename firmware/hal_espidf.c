/* Platform for ESP-IDF boards: UART0 through the IDF driver, esp_timer for
 * microseconds; for the duty-cycled firmware, a GPIO as the marker and
 * esp_light_sleep_start / esp_deep_sleep_start with a timer wakeup. app_main
 * runs the firmware (td_main.c or td_duty.c), of either engine. TD_BAUD comes
 * from the generated src/CMakeLists.txt. */
#include "driver/gpio.h"
#include "driver/uart.h"
#include "esp_sleep.h"
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

static int marker_gpio = -1;

void td_hal_marker_setup(int gpio) {
  marker_gpio = gpio;
  if (gpio < 0) return;
  gpio_reset_pin((gpio_num_t)gpio);
  gpio_set_direction((gpio_num_t)gpio, GPIO_MODE_OUTPUT);
  gpio_set_level((gpio_num_t)gpio, 0);
}

void td_hal_marker(int level) {
  if (marker_gpio >= 0) gpio_set_level((gpio_num_t)marker_gpio, level ? 1 : 0);
}

void td_hal_sleep_us(uint64_t us, int mode) {
  if (mode == TD_SLEEP_AWAKE) {
    uint64_t end = td_hal_ticks() + us;
    while (td_hal_ticks() < end) {
    }
    return;
  }
  uart_wait_tx_done(TD_UART, portMAX_DELAY); /* the UART stops in sleep: send what is queued first */
  esp_sleep_enable_timer_wakeup(us);
  if (mode == TD_SLEEP_DEEP) esp_deep_sleep_start(); /* does not return: app_main runs again on waking */
  esp_light_sleep_start(); /* esp_timer keeps counting through it */
}

void app_main(void) { td_main(); }
