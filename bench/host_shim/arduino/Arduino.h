/* Host stand-in for the parts of the Arduino API (arduino-esp32 flavour) that
 * tinydeploy's firmware and the TFLM Arduino library use. */
#ifndef TD_SHIM_ARDUINO_H_
#define TD_SHIM_ARDUINO_H_

#include <math.h>  /* arduino-esp32's Arduino.h brings in the C library's usual headers */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_uart.h"

#define LOW 0
#define HIGH 1
#define OUTPUT 3
/* Recorded (host_uart.c's td_shim_record); no pin is driven. */
void pinMode(uint8_t pin, uint8_t mode);
void digitalWrite(uint8_t pin, uint8_t value);

unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);

class HardwareSerial {
 public:
  void begin(unsigned long baud) { td_uart_begin((uint32_t)baud, 0); }
  /* arduino-esp32: takes effect at the next begin(); the default is 256 bytes. */
  size_t setRxBufferSize(size_t size) {
    td_uart_set_rx_size(size);
    return size;
  }
  int available() { return (int)td_uart_available(); }
  int read() {
    uint8_t byte;
    return td_uart_read(&byte, 1, 0) == 1 ? byte : -1;
  }
  size_t write(const uint8_t *data, size_t len) {
    td_uart_write(data, len);
    return len;
  }
  size_t write(uint8_t byte) { return write(&byte, 1); }
  size_t print(const char *text) { return write((const uint8_t *)text, strlen(text)); }
  size_t println(const char *text) { return print(text) + print("\r\n"); }
  void flush() {}
  explicit operator bool() const { return td_uart_started() != 0; }
};

extern HardwareSerial Serial;

#endif /* TD_SHIM_ARDUINO_H_ */
