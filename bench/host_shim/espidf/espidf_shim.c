/* Host stand-ins for the ESP-IDF calls, and a main() that starts app_main()
 * as the IDF's startup code would. The console starts at 115200 baud, as the
 * ROM and bootloader leave it. */
#include <stdio.h>
#include <unistd.h>

#include "driver/gpio.h"
#include "driver/uart.h"
#include "esp_sleep.h"
#include "esp_timer.h"

void app_main(void);

esp_err_t uart_driver_install(uart_port_t port, int rx_buffer_size, int tx_buffer_size, int queue_size,
                              QueueHandle_t *queue, int intr_alloc_flags) {
  (void)port, (void)tx_buffer_size, (void)queue_size, (void)queue, (void)intr_alloc_flags;
  td_uart_begin(115200, (size_t)rx_buffer_size);
  return ESP_OK;
}

esp_err_t uart_set_baudrate(uart_port_t port, uint32_t baud_rate) {
  (void)port;
  td_uart_set_baud(baud_rate);
  return ESP_OK;
}

int uart_write_bytes(uart_port_t port, const void *src, size_t size) {
  (void)port;
  td_uart_write(src, size);
  return (int)size;
}

int uart_read_bytes(uart_port_t port, void *buf, uint32_t length, TickType_t ticks_to_wait) {
  (void)port;
  return (int)td_uart_read(buf, length, ticks_to_wait == portMAX_DELAY ? -1 : (int)ticks_to_wait);
}

esp_err_t uart_wait_tx_done(uart_port_t port, TickType_t ticks_to_wait) {
  (void)port, (void)ticks_to_wait; /* td_uart_write returns once the bytes are on the line */
  return ESP_OK;
}

int gpio_reset_pin(gpio_num_t gpio_num) {
  td_shim_record("gpio_reset", gpio_num);
  return ESP_OK;
}

int gpio_set_direction(gpio_num_t gpio_num, gpio_mode_t mode) {
  td_shim_record(mode == GPIO_MODE_OUTPUT ? "gpio_output" : "gpio_input", gpio_num);
  return ESP_OK;
}

int gpio_set_level(gpio_num_t gpio_num, uint32_t level) {
  (void)gpio_num;
  td_shim_record(level ? "marker_high" : "marker_low", gpio_num);
  return ESP_OK;
}

int64_t esp_timer_get_time(void) { return (int64_t)td_host_micros(); }

int main(void) {
  /* The IDF console, where stdout and stderr (TFLM's log) go, is UART0: the protocol's line. */
  setvbuf(stdout, NULL, _IONBF, 0);
  dup2(1, 2);
  td_shim_record("boot", 0);
  app_main();
  return 0;
}
