/* Host stand-in for the ESP-IDF UART driver calls tinydeploy's firmware makes. */
#ifndef TD_SHIM_DRIVER_UART_H_
#define TD_SHIM_DRIVER_UART_H_

#include <stddef.h>
#include <stdint.h>

#include "host_uart.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int uart_port_t;
typedef int esp_err_t;
typedef uint32_t TickType_t;
typedef void *QueueHandle_t;
#define UART_NUM_0 0
#define ESP_OK 0
#define portMAX_DELAY ((TickType_t)0xffffffffu)

esp_err_t uart_driver_install(uart_port_t port, int rx_buffer_size, int tx_buffer_size, int queue_size,
                              QueueHandle_t *queue, int intr_alloc_flags);
esp_err_t uart_set_baudrate(uart_port_t port, uint32_t baud_rate);
int uart_write_bytes(uart_port_t port, const void *src, size_t size);
int uart_read_bytes(uart_port_t port, void *buf, uint32_t length, TickType_t ticks_to_wait);
esp_err_t uart_wait_tx_done(uart_port_t port, TickType_t ticks_to_wait);

#ifdef __cplusplus
}
#endif

#endif /* TD_SHIM_DRIVER_UART_H_ */
