/* One emulated UART on stdin/stdout for host builds of tinydeploy firmware. */
#ifndef TD_HOST_UART_H_
#define TD_HOST_UART_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Start (or restart) the UART at a baud rate with a receive buffer of rx_size bytes. */
void td_uart_begin(uint32_t baud, size_t rx_size);
void td_uart_set_baud(uint32_t baud);
/* Ask for a receive buffer size before td_uart_begin (0 keeps the current one). */
void td_uart_set_rx_size(size_t rx_size);
void td_uart_write(const void *data, size_t len);
/* Up to len received bytes, waiting at most timeout_ms (-1: forever); returns the count. */
size_t td_uart_read(void *data, size_t len, int timeout_ms);
size_t td_uart_available(void);
int td_uart_started(void);
uint64_t td_host_micros(void);
/* Records one event for the tests (host_uart.c). */
void td_shim_record(const char *event, long long value);

#ifdef __cplusplus
}
#endif

#endif /* TD_HOST_UART_H_ */
